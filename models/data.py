"""Corpora, synthetic tasks, LM batching and the MLM / T5 corruption of token ids.

Corpora (`load_corpus`):

- `"austen"`: the six novels of Jane Austen as packaged by the R package
  janeaustenr (Julia Silge; on CRAN, and in Debian as `r-cran-janeaustenr`), whose
  texts come from Project Gutenberg. They are fetched with `apt-get download`, read
  out of the package's R lazy-load database, and cached as plain text under
  `<cache>/corpora/austen/<book>.txt`, where `<cache>` is `$ATTNLAB_CACHE_DIR`, else
  `$XDG_CACHE_HOME/attnlab`, else `~/.cache/attnlab`. Placing the six files there by
  hand works offline.
- `"wikitext-2"`: WikiText-2 (raw) through the `datasets` library, when it is installed
  and the Hugging Face hub is reachable or its local cache is used (`HF_HUB_OFFLINE=1`).
- `"reversal"`, `"copy"`: small synthetic text corpora, one `source=target` line each.
- any other string is a path: a text file, or a folder whose `*.txt` files are joined.

Synthetic tasks for the labs return token ids (`repeated_segments`) or string pairs
(`reversal_pairs`, `copy_pairs`) and are deterministic for a seed.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # what torch.nn.functional.cross_entropy skips by default


class CorpusUnavailable(RuntimeError):
    """A named corpus cannot be obtained here; the message says what to do instead."""


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Root of attnlab's user cache: $ATTNLAB_CACHE_DIR, else $XDG_CACHE_HOME/attnlab."""
    override = os.environ.get("ATTNLAB_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "attnlab"


def corpus_cache_dir(name: str) -> Path:
    return cache_dir() / "corpora" / name


# --------------------------------------------------------------------------- austen

AUSTEN_PACKAGE = "r-cran-janeaustenr"
# Object names inside the R package, in publication order (the order of
# janeaustenr::austen_books()); they are also the cached file names.
AUSTEN_BOOKS: tuple[str, ...] = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)
_APT_TIMEOUT_S = 120


def _austen_help(directory: Path) -> str:
    files = ", ".join(f"{b}.txt" for b in AUSTEN_BOOKS)
    return f"place the six texts in {directory} ({files}) or pass a local text file or folder to load_corpus"


def download_austen_deb(dest: str | Path) -> Path:
    """Fetch the janeaustenr Debian package into `dest` with `apt-get download`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    apt = shutil.which("apt-get")
    if apt is None:
        raise CorpusUnavailable(f"apt-get is not available to fetch {AUSTEN_PACKAGE}; {_austen_help(corpus_cache_dir('austen'))}")
    logger.info("downloading %s with apt-get", AUSTEN_PACKAGE)
    try:
        proc = subprocess.run(
            [apt, "download", AUSTEN_PACKAGE],
            cwd=dest, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise CorpusUnavailable(
            f"apt-get download {AUSTEN_PACKAGE} took over {_APT_TIMEOUT_S} s; {_austen_help(corpus_cache_dir('austen'))}"
        ) from None
    debs = sorted(dest.glob(f"{AUSTEN_PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no .deb produced"]
        raise CorpusUnavailable(
            f"apt-get download {AUSTEN_PACKAGE} failed ({detail[0]}); if the package is unknown, "
            f"run apt-get update first; otherwise {_austen_help(corpus_cache_dir('austen'))}"
        )
    return debs[-1]


def read_r_lazyload(rdb: str | Path, rdx: str | Path) -> dict[str, list[str]]:
    """Read every character vector from an R lazy-load database (`.rdb` + `.rdx`).

    The `.rdx` index is a gzip'd R-serialised list whose `variables` maps each object
    name to (offset, length) in the `.rdb`; each entry there is a 4-byte big-endian
    uncompressed length followed by zlib data, itself an R-serialised object. R's
    serialisation format is parsed by the `rdata` package.
    """
    try:
        import rdata
    except ImportError:
        raise CorpusUnavailable("reading R data needs the `rdata` package: pip install rdata") from None

    def unserialize(raw: bytes) -> object:
        with warnings.catch_warnings():
            # These are bare serialised objects, not .rda files; rdata guesses right
            # but warns about having to guess.
            warnings.filterwarnings("ignore", message="Unknown file type")
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = unserialize(gzip.decompress(Path(rdx).read_bytes()))
    db = Path(rdb).read_bytes()
    objects: dict[str, list[str]] = {}
    for name, (offset, length) in index["variables"].items():
        entry = db[int(offset) : int(offset) + int(length)]
        expected = int.from_bytes(entry[:4], "big")
        raw = zlib.decompress(entry[4:])
        if len(raw) != expected:
            raise ValueError(f"{rdb}: entry {name!r} is {len(raw)} bytes, header says {expected}")
        # R's NA_character_ comes back as None; a missing line is an empty line.
        objects[str(name)] = ["" if line is None else str(line) for line in unserialize(raw)]
    return objects


def read_austen_deb(deb: str | Path) -> dict[str, str]:
    """Unpack the janeaustenr .deb and return {book: text}, one line per R string."""
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise CorpusUnavailable(f"dpkg-deb is not available to unpack {deb}; {_austen_help(corpus_cache_dir('austen'))}")
    with tempfile.TemporaryDirectory(prefix="attnlab-austen-") as tmp:
        subprocess.run([dpkg, "-x", str(deb), tmp], check=True, capture_output=True, timeout=_APT_TIMEOUT_S)
        found = list(Path(tmp).rglob("janeaustenr/data/Rdata.rdb"))
        if not found:
            raise CorpusUnavailable(f"{deb} has no janeaustenr/data/Rdata.rdb; {_austen_help(corpus_cache_dir('austen'))}")
        rdb = found[0]
        objects = read_r_lazyload(rdb, rdb.with_suffix(".rdx"))
    missing = [b for b in AUSTEN_BOOKS if b not in objects]
    if missing:
        raise ValueError(f"{deb} lacks the books {missing}; found {sorted(objects)}")
    return {book: "\n".join(objects[book]) + "\n" for book in AUSTEN_BOOKS}


def austen_books(directory: str | Path | None = None, deb: str | Path | None = None) -> dict[str, str]:
    """The six novels as {book: text}, in publication order; fetched and cached on first use.

    `directory` defaults to `<cache>/corpora/austen`; `deb` uses an already
    downloaded `r-cran-janeaustenr` package instead of calling apt-get.
    """
    directory = Path(directory) if directory is not None else corpus_cache_dir("austen")
    paths = {book: directory / f"{book}.txt" for book in AUSTEN_BOOKS}
    if not all(p.is_file() for p in paths.values()):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="attnlab-apt-") as tmp:
            books = read_austen_deb(deb if deb is not None else download_austen_deb(tmp))
        directory.mkdir(parents=True, exist_ok=True)
        for book, text in books.items():
            # Write then rename, so an interrupted run never leaves a half book that
            # would later pass as cached.
            part = paths[book].with_suffix(".txt.part")
            part.write_text(text, encoding="utf-8")
            part.replace(paths[book])
        logger.info("cached the Austen novels in %s (%.1f s)", directory, time.perf_counter() - start)
    return {book: p.read_text(encoding="utf-8") for book, p in paths.items()}


def load_austen() -> str:
    """All six novels, joined by a blank line."""
    return "\n".join(austen_books().values())


# --------------------------------------------------------------------------- wikitext

_HF_HOST = ("huggingface.co", 443)
_PROBE_TIMEOUT_S = 3.0


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_wikitext2(split: str = "train") -> str:
    """WikiText-2 (raw), one split, as the original line-per-row text joined together."""
    try:
        import datasets
    except ImportError:
        raise CorpusUnavailable(
            "wikitext-2 needs the `datasets` package (pip install datasets); or pass a local text file"
        ) from None
    offline = _truthy("HF_HUB_OFFLINE") or _truthy("HF_DATASETS_OFFLINE")
    # The hub client retries for a long time when the network is down; a short probe
    # turns that into an immediate, explained failure.
    if not offline and not _reachable(*_HF_HOST, _PROBE_TIMEOUT_S):
        raise CorpusUnavailable(
            f"{_HF_HOST[0]} is unreachable; set HF_HUB_OFFLINE=1 to use a local datasets cache, "
            "or pass a local text file"
        )
    logger.info("loading wikitext-2 (%s) through datasets%s", split, " offline" if offline else "")
    try:
        ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1", split=split)
    except Exception as e:  # datasets raises many types; all mean "not here"
        raise CorpusUnavailable(f"could not load wikitext-2: {e}; pass a local text file instead") from e
    # Each row is one line of the original file, newline included.
    return "".join(ds["text"])


# --------------------------------------------------------------------------- synthetic


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_tokens(shape: Sequence[int], vocab_size: int, seed: int = 0, low: int = 0) -> Tensor:
    """Uniform ids in [low, vocab_size); `low` keeps special ids out."""
    if not 0 <= low < vocab_size:
        raise ValueError(f"need 0 <= low < vocab_size, got low={low}, vocab_size={vocab_size}")
    return torch.randint(low, vocab_size, tuple(shape), generator=_generator(seed))


def repeated_segments(n_seqs: int, seg_len: int, vocab_size: int, seed: int = 0, low: int = 0) -> Tensor:
    """(n_seqs, 2 * seg_len): a random segment, then the same segment again.

    In the second half the next token is predictable only by finding the previous
    occurrence of the current token and copying what followed it: the task induction
    heads solve (Olsson et al. 2022).
    """
    segment = random_tokens((n_seqs, seg_len), vocab_size, seed, low)
    return torch.cat([segment, segment], dim=1)


def _random_strings(n: int, min_len: int, max_len: int, alphabet: str, seed: int) -> list[str]:
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if not alphabet:
        raise ValueError("alphabet must not be empty")
    g = _generator(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    letters = torch.randint(len(alphabet), (sum(lengths),), generator=g).tolist()
    out, pos = [], 0
    for length in lengths:
        out.append("".join(alphabet[i] for i in letters[pos : pos + length]))
        pos += length
    return out


LOWERCASE = "abcdefghijklmnopqrstuvwxyz"


def reversal_pairs(
    n: int, min_len: int = 3, max_len: int = 12, alphabet: str = LOWERCASE, seed: int = 0
) -> list[tuple[str, str]]:
    """(source, reversed source) pairs: cross-attention learns an anti-diagonal."""
    return [(s, s[::-1]) for s in _random_strings(n, min_len, max_len, alphabet, seed)]


def copy_pairs(
    n: int, min_len: int = 3, max_len: int = 12, alphabet: str = LOWERCASE, seed: int = 0
) -> list[tuple[str, str]]:
    """(source, source) pairs: cross-attention learns a diagonal."""
    return [(s, s) for s in _random_strings(n, min_len, max_len, alphabet, seed)]


def _pairs_text(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{src}={tgt}\n" for src, tgt in pairs)


# --------------------------------------------------------------------------- corpora

CORPORA: dict[str, Callable[[], str]] = {
    "austen": load_austen,
    "wikitext-2": load_wikitext2,
    "reversal": lambda: _pairs_text(reversal_pairs(10_000)),
    "copy": lambda: _pairs_text(copy_pairs(10_000)),
}


def _read_path(path: Path) -> str:
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise ValueError(f"folder {path} has no *.txt files")
        logger.info("reading %d text files from %s", len(files), path)
        return "\n".join(f.read_text(encoding="utf-8") for f in files)
    return path.read_text(encoding="utf-8")


def load_corpus(name_or_path: str | Path) -> str:
    """A corpus as one string: a name from CORPORA, a text file, or a folder of *.txt.

    Names win over paths; write `./austen` to mean a folder called austen.
    """
    if isinstance(name_or_path, str) and name_or_path in CORPORA:
        return CORPORA[name_or_path]()
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _read_path(path)
    raise ValueError(f"unknown corpus {str(name_or_path)!r}: not a file or folder, and not one of {', '.join(CORPORA)}")


# --------------------------------------------------------------------------- LM batches


def train_val_split(ids: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Split a 1-D id tensor into a leading train part and a trailing validation part.

    Contiguous, not shuffled: random windows from either side then never overlap.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = len(ids) - int(round(len(ids) * val_fraction))
    return ids[:n_train], ids[n_train:]


class LMBatcher:
    """Random contiguous windows for causal LM: x = ids[s : s+T], y = ids[s+1 : s+T+1].

    The windows come from this batcher's own torch.Generator, so a seed fixes the
    whole sequence of batches regardless of other random draws in the program.
    """

    def __init__(
        self,
        ids: Tensor,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        if len(ids) <= block_size:
            raise ValueError(f"need more than block_size={block_size} tokens, got {len(ids)}")
        self.ids = ids.long()
        self.block_size = block_size
        self.batch_size = batch_size
        self.device = device
        self.generator = _generator(seed)
        self._offsets = torch.arange(block_size)

    def sample(self) -> tuple[Tensor, Tensor]:
        """One batch: x and y, each (batch_size, block_size)."""
        starts = torch.randint(len(self.ids) - self.block_size, (self.batch_size,), generator=self.generator)
        index = starts[:, None] + self._offsets  # (B, T)
        x, y = self.ids[index], self.ids[index + 1]
        if self.device is not None:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.sample()


def batches(
    ids: Tensor, block_size: int, batch_size: int, n_batches: int, seed: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """`n_batches` batches from an `LMBatcher` with this seed."""
    batcher = LMBatcher(ids, block_size, batch_size, seed)
    for _ in range(n_batches):
        yield batcher.sample()


# --------------------------------------------------------------------------- MLM


def mask_tokens(
    ids: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2018, section 3.1).

    Each non-special token is selected with probability `prob`; of the selected, 80%
    become `mask_id`, 10% a random token, 10% stay as they are. `labels` hold the
    original id where selected and -100 elsewhere. Random replacements are drawn from
    the non-special ids only, so `<pad>` or `<bos>` never appear mid-text. The
    generator, if given, must live on `ids.device`.
    """
    specials = torch.as_tensor(sorted(set(special_ids)), dtype=torch.long, device=ids.device)
    selectable = ~torch.isin(ids, specials)
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = (draw < prob) & selectable
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))

    # A second uniform draw splits the selected tokens 80 / 10 / 10.
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)

    vocab = torch.arange(vocab_size, device=ids.device)
    ordinary = vocab[~torch.isin(vocab, specials)]
    if len(ordinary) == 0:
        raise ValueError("every id is special; nothing to draw random tokens from")
    pick = torch.randint(len(ordinary), ids.shape, generator=generator, device=ids.device)

    inputs = ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = ordinary[pick][to_random]
    return inputs, labels


# --------------------------------------------------------------------------- T5 spans


def _random_partition(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """`total` split into `parts` positive lengths, uniformly over such splits."""
    cuts = (torch.randperm(total - 1, generator=generator)[: parts - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def span_corrupt(
    ids: Tensor,
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """T5's span corruption of one 1-D sequence (Raffel et al. 2020, section 3.1.4).

    About `noise_density` of the tokens, in spans of mean length `mean_span`, are
    cut out. `inputs` keep the rest with sentinel i where span i was; `targets` are
    sentinel i followed by span i, for each span in order. As in T5's
    `random_spans_noise_mask`, the sequence starts with kept tokens and ends with a
    noise span. No EOS is appended: that is the caller's choice.
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"span_corrupt takes one 1-D sequence, got shape {tuple(ids.shape)}")
    length = len(ids)
    if length < 2:
        raise ValueError("span_corrupt needs at least 2 tokens")
    n_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    n_spans = max(int(round(n_noise / mean_span)), 1)
    n_spans = min(n_spans, n_noise, length - n_noise)
    if n_spans > len(sentinel_ids):
        raise ValueError(f"{n_spans} spans need as many sentinels, only {len(sentinel_ids)} given")

    noise_lengths = _random_partition(n_noise, n_spans, generator)
    keep_lengths = _random_partition(length - n_noise, n_spans, generator)

    inputs, targets, pos = [], [], 0
    for i, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        sentinel = ids.new_tensor([sentinel_ids[i]])
        inputs += [ids[pos : pos + keep], sentinel]
        pos += keep
        targets += [sentinel, ids[pos : pos + noise]]
        pos += noise
    return torch.cat(inputs), torch.cat(targets)


def fill_spans(inputs: Tensor, targets: Tensor, sentinel_ids: Sequence[int]) -> Tensor:
    """Undo `span_corrupt`: put each target span back where its sentinel stands.

    Also shows a model's predicted spans in context when `targets` are predictions;
    a sentinel with no span in `targets` is left out.
    """
    sentinels = set(int(s) for s in sentinel_ids)
    spans: dict[int, list[int]] = {}
    current: list[int] | None = None
    for token in targets.tolist():
        if token in sentinels:
            current = spans.setdefault(token, [])
        elif current is not None:
            current.append(token)
    out: list[int] = []
    for token in inputs.tolist():
        out += spans.get(token, []) if token in sentinels else [token]
    return torch.tensor(out, dtype=torch.long)
