"""Settings from the environment (prefix ATTNLAB_), read once behind get_settings()."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from attnlab.models.device import Placement, resolve
from attnlab.models.paths import ZOO as ZOO_DIR
from attnlab.models.paths import data_dir as user_data_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTNLAB_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # models: hub ids allowed besides the bundled ones, and the root of local model directories
    allowlist: list[str] = Field(default_factory=lambda: ["gpt2", "distilgpt2", "bert-base-uncased"])
    model_dir: Path | None = None
    # model directories the operator named at start (`attnlab serve --model PATH`): served by their directory's
    # name, wherever they lie; requests never name a path
    model_paths: list[Path] = Field(default_factory=list)
    zoo_dir: Path = ZOO_DIR  # trained demo checkpoints and lab results (extrapolation/results.json)
    # the user's own files (ATTNLAB_DATA_DIR, else platformdirs' user data dir): lab re-runs in <data_dir>/labs,
    # listed as my-<name> beside the shipped zoo
    data_dir: Path = Field(default_factory=user_data_dir)
    default_models: list[str] = Field(default_factory=lambda: ["minilm", "smollm2"])
    preload: bool = False  # load default models at start-up instead of on first use
    # load default models in the background at start-up (SmolLM2's first load converts its GGUF, ~60 s);
    # /api/health says `preparing` meanwhile. `attnlab serve` turns it on unless --no-prepare
    prepare_on_start: bool = False
    # backend `auto` (and POST /api/runs/stream without one): flash from this many tokens on, where the model has it
    auto_flash_min_tokens: int = 512
    # GET /api/long-text: the demo passage's default length (also bounded by the model and the run cache); 2048
    # tokens run in ~10 s on SmolLM2 with flash on 2 CPU cores
    long_text_tokens: int = 2048
    # limits
    max_text_chars: int = 100_000  # all text fields of one request together
    # request bodies past this are refused (413) before they are read; None: body_limit_bytes()
    max_body_bytes: int | None = None
    dense_budget: int = 4_000_000  # L*H*T^2 weights in one /api/attention answer; values of one positional answer
    # GET /api/positional/{scheme} (data or figures) and /api/figures/similarity: the largest sizes asked for;
    # dense_budget bounds the values they give together (max_len x d_model, n_heads x max_len^2)
    positional_max_d_model: int = 2048
    positional_max_len: int = 4096
    max_tile_cells: int = 2048 * 2048  # rows*cols of one exact tile from /api/runs/{id}/attention
    max_pool: int = 2048  # largest side of a pooled overview
    head_stats_max_tokens: int = 1024  # POST /api/runs computes head scores inline up to this length
    head_stats_max_cells: int = 2_000_000_000  # GET .../heads on longer runs: L*H*T^2 weights visited (~10 s CPU)
    run_cache_bytes: int = 512 * 2**20
    # runs up to this many tokens keep Q and K in float32 (tiles equal `math` to ~1e-6); longer runs keep them as
    # int16 with a float32 scale per vector (2 + 4/head_dim bytes per value), attention run on those values: rows
    # sum to 1, tiles within 2e-3 of the float32 model (SmolLM2: 8.7e-4). SmolLM2 at 8,192 tokens: 380 MiB
    # instead of 736 (per token per layer: (9 + 3) x (64 x 2 + 4) + 9 x 4 = 1,620 bytes)
    capture_float32_max_tokens: int = 4096
    # POST /api/runs on `math`: its T x T weights of every head of one layer at once (float32) must fit this,
    # else 413 naming the backend (flash is O(T)); counted as 3 maps per head (scores, a biased copy, weights), and
    # shared by the forwards under way at once (429 past it); 1 GiB: 4 heads to ~4,700 tokens
    math_max_bytes: int = 2**30
    # runs of at least this many tokens pool every head's whole map at once, at these sizes (the Explorer's 48-cell
    # thumbnails, then its 512-cell head view), so a page finds them ready: flash gathers them from its own tiles
    # as it runs (from pool_while_running_min_tokens), other backends pool them in the background after the run.
    # A size is pooled only while the overviews of every head of every layer, smallest size first, fit
    # prepool_max_bytes (SmolLM2 at 8k: the thumbnails, 2.5 MiB; its 512-cell maps would take 283 MiB and are
    # pooled on request instead, 0.14 s each). Cost on flash (bench/long_context.py): SmolLM2 8k thumbnails +12%
    # of its attention time (~6% of the forward); 32k ALiBi, both sizes, +18%, where pooling one head after the run
    # takes 2.8 s
    prepool_min_tokens: int = 4096
    prepool_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [48, 512])
    prepool_max_bytes: int = Field(64 * 2**20, ge=0)
    pool_while_running_min_tokens: int = 4096
    # where every worker finds a run's request (app.services.run_store): 'sqlite' (<cache_dir>/runs.sqlite3, the
    # workers of one machine), 'sqlite:////abs/path.sqlite3', 'redis://host:6379/0' (replicas), 'memory' (one worker)
    run_store: str = "sqlite"
    run_ttl_s: float = Field(24 * 3600.0, gt=0)  # a stored run expires this long after its last POST /api/runs
    # POST /api/objectives: the masked side runs the text once per token (n x n tokens)
    objectives_max_tokens: int = 128
    # GET /api/runs/{id}/qk: queries + keys of one head embedded by t-SNE or UMAP (PCA is not capped: 2 x 8192
    # points take well under a second); t-SNE of 2 x 1024 points takes ~10 s on 2 busy cores
    qk_max_points: int = 1024
    qk_umap: bool = True  # UMAP's first call compiles with numba (~90 s on 2 busy cores): a server may turn it off
    # GET /api/runs/{id}/sparse answers three T x T maps (dense, pattern, sparse) as JSON
    sparse_max_tokens: int = 512
    # GET /api/sparse/cost: the longest length timed (dense and sparse flash forward, 3 runs each)
    sparse_cost_max_len: int = 4096
    max_new_tokens: int = 256
    generate_timeout_s: float = 60.0
    # rows stop once this is spent; the row running then finishes (one row is bounded by benchmark_max_cells),
    # so a sweep answers within ~10 s: the response-time bound schemathesis checks
    benchmark_budget_s: float = 6.0
    benchmark_max_cells: int = 64 * 2**20  # n_heads * T^2 of the largest synthetic benchmark shape
    # GET /api/figures/profile: the work of one profile (models.introspection.profile_cost_gflop). 100 GFLOP is ~1.3 s
    # on 2 idle CPU cores and ~10 s on 2 busy ones: MiniLM-L6 up to 116 tokens; SmolLM2-135M (320 GFLOP at 4
    # tokens) only where this is raised
    profile_max_gflop: float = 100.0
    # /api/interventions/* and /api/lens (app.services.interventions). 128 tokens keeps the slowest of them on
    # SmolLM2 (the lens: 30 unembeddings of 49152 logits per token) within a few seconds on 2 CPU cores
    intervention_max_tokens: int = 128
    ablation_grid_max_heads: int = 64  # importance adds the exact single-head ablation grid up to this many heads
    # activation patching stops once this is spent (cells left null). SmolLM2 on a 14-token name swap, 1 thread: the
    # 30 whole layers take ~6 s, then ~2 s per layer of heads; the full 270-head grid ~60 s
    patch_budget_s: float = 8.0
    importance_max_probes: int = 16  # random projections for encoders without a head (one batch row each)
    lens_max_k: int = 20  # top tokens per layer and position in the logit lens
    # concurrency: requests running per model, and how many may wait behind them
    per_model_concurrency: int = 2
    queue_limit: int = 16
    queue_timeout_s: float = 30.0  # a request waiting longer than this gets 503
    retry_after_s: int = 2
    # transport
    gzip_min_bytes: int = 16 * 1024
    gzip_level: int = 5  # level 9 costs ~3x the CPU for a few percent on JSON
    cors_origins: list[str] = Field(default_factory=list)
    # SSE keep-alive comments on long streams, so proxies (nginx proxy_read_timeout: 60 s) keep them open
    sse_ping_s: float = Field(15.0, gt=0)
    log_level: str = "INFO"
    # intra-op threads per forward. None: cores / per_model_concurrency, so concurrent requests do
    # not oversubscribe the CPU (measured on 2 busy cores: 2 threads per forward ran ~20x slower)
    torch_threads: int | None = None
    # where models run (attnlab.models.device). device auto: CUDA when present, else CPU; dtype auto: float32 on
    # CPU, bfloat16 on CUDA. The LSE and the capture's tiles stay float32 whatever the dtype
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # on a GPU, captures in the run cache live in GPU memory: the cache takes at most this fraction of it
    # (and at most run_cache_bytes), so the models' own forwards keep the rest
    gpu_cache_fraction: float = Field(0.25, gt=0.0, le=0.9)
    # on a GPU, the memory one request may need beyond the weights (activations and the capture of a long
    # input; ~1 GiB for SmolLM2-135M at 8k tokens in bf16): per_model_concurrency is lowered so that this many
    # requests fit in the memory free after the models loaded
    gpu_request_bytes: int = Field(2 * 2**30, gt=0)

    @property
    def benchmark_max_seq_len(self) -> int:
        """The longest synthetic benchmark sequence: one head of T x T within benchmark_max_cells (a bound the
        API states, derived from the setting, so the schema never admits a length the budget always refuses)."""
        return math.isqrt(self.benchmark_max_cells)

    def placement(self) -> Placement:
        """Where models run; ValueError naming the setting for cuda without a CUDA device."""
        return resolve(self.device, self.dtype)

    def run_cache_limit(self, placement: Placement, total_gpu_bytes: int | None = None) -> int:
        """The run cache's byte budget: run_cache_bytes, on a GPU also at most gpu_cache_fraction of its memory."""
        if placement.device.type != "cuda":
            return self.run_cache_bytes
        import torch

        total = total_gpu_bytes if total_gpu_bytes is not None else torch.cuda.mem_get_info(placement.device)[1]
        return min(self.run_cache_bytes, int(self.gpu_cache_fraction * total))

    def concurrency(self, placement: Placement, free_gpu_bytes: int | None = None) -> int:
        """Requests running per model: per_model_concurrency, on a GPU also at most what gpu_request_bytes allows."""
        if placement.device.type != "cuda":
            return self.per_model_concurrency
        import torch

        free = free_gpu_bytes if free_gpu_bytes is not None else torch.cuda.mem_get_info(placement.device)[0]
        return max(1, min(self.per_model_concurrency, free // self.gpu_request_bytes))

    @property
    def labs_dir(self) -> Path:
        """Where `attnlab lab NAME` writes by default (attnlab.models.paths.labs_dir under this data_dir)."""
        return self.data_dir / "labs"

    def threads_per_forward(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 1) // self.per_model_concurrency)

    def body_limit_bytes(self) -> int:
        """The largest body a valid request can have: max_text_chars characters of text, each escaped in
        the JSON as a surrogate pair (a character past U+FFFF counts once to max_text_chars but json.dumps
        sends it as the 12 bytes `\\ud83d\\ude00`), plus room for the other fields (a 200-character model
        id, 1024 layers and 1024 heads come to ~16 KB)."""
        return self.max_body_bytes or self.max_text_chars * 12 + 64 * 1024


@lru_cache
def get_settings() -> Settings:
    return Settings()
