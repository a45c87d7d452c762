"""Settings from the environment (prefix ATTNLAB_), read once behind get_settings()."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTNLAB_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # models: hub ids allowed besides the bundled ones, and the root of local model directories
    allowlist: list[str] = Field(default_factory=lambda: ["gpt2", "distilgpt2", "bert-base-uncased"])
    model_dir: Path | None = None
    default_models: list[str] = Field(default_factory=lambda: ["minilm", "smollm2"])
    preload: bool = False  # load default models at start-up instead of on first use
    # limits
    max_text_chars: int = 100_000
    max_tokens: int = 8192
    dense_budget: int = 4_000_000  # L*H*T^2 weights in one /api/attention answer
    run_cache_bytes: int = 512 * 2**20
    max_new_tokens: int = 256
    generate_timeout_s: float = 60.0
    benchmark_budget_s: float = 20.0
    per_model_concurrency: int = 2
    queue_limit: int = 16
    cors_origins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
