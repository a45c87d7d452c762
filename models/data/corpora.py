"""Corpora: named texts (Jane Austen, WikiText-2, synthetic pairs) or files, as one string.

Corpora (`load_corpus`):

- `"austen"`: the six novels of Jane Austen as packaged by the R package
  janeaustenr (Julia Silge; on CRAN, and in Debian as `r-cran-janeaustenr`), whose
  texts come from Project Gutenberg. They are fetched with `apt-get download`, read
  out of the package's R lazy-load database, and cached as plain text under
  `<cache>/corpora/austen/<book>.txt`, where `<cache>` is `attnlab.models.paths.cache_dir()`
  (`$ATTNLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/attnlab`, else `~/.cache/attnlab`).
  Placing the six files there by hand works offline.
- `"wikitext-2"`: WikiText-2 (raw) through the `datasets` library, when it is installed
  and the Hugging Face hub is reachable or its local cache is used (`HF_HUB_OFFLINE=1`).
- `"reversal"`, `"copy"`: small synthetic text corpora, one `source=target` line each.
- any other string is a path: a text file, or a folder whose `*.txt` files are joined.

`train_val_split` cuts token ids into a leading train and a trailing validation part.
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
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from ..paths import cache_dir
from .synthetic import copy_pairs, pairs_text, reversal_pairs

logger = logging.getLogger(__name__)


class CorpusUnavailable(RuntimeError):
    """A named corpus cannot be obtained here; the message says what to do instead."""


def corpus_cache_dir(name: str) -> Path:
    """``<cache>/corpora/<name>``: where a fetched corpus is kept as plain text."""
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
        raise CorpusUnavailable(f"apt-get is not available to fetch {AUSTEN_PACKAGE}; "
                                f"{_austen_help(corpus_cache_dir('austen'))}")
    logger.info("downloading %s with apt-get", AUSTEN_PACKAGE)
    try:
        proc = subprocess.run(
            [apt, "download", AUSTEN_PACKAGE],
            cwd=dest, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise CorpusUnavailable(
            f"apt-get download {AUSTEN_PACKAGE} took over {_APT_TIMEOUT_S} s; "
            f"{_austen_help(corpus_cache_dir('austen'))}"
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
        raise CorpusUnavailable(f"dpkg-deb is not available to unpack {deb}; "
                                f"{_austen_help(corpus_cache_dir('austen'))}")
    with tempfile.TemporaryDirectory(prefix="attnlab-austen-") as tmp:
        subprocess.run([dpkg, "-x", str(deb), tmp], check=True, capture_output=True, timeout=_APT_TIMEOUT_S)
        found = list(Path(tmp).rglob("janeaustenr/data/Rdata.rdb"))
        if not found:
            raise CorpusUnavailable(f"{deb} has no janeaustenr/data/Rdata.rdb; "
                                    f"{_austen_help(corpus_cache_dir('austen'))}")
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


CORPORA: dict[str, Callable[[], str]] = {
    "austen": load_austen,
    "wikitext-2": load_wikitext2,
    "reversal": lambda: pairs_text(reversal_pairs(10_000)),
    "copy": lambda: pairs_text(copy_pairs(10_000)),
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


# --------------------------------------------------------------------------- splits


def train_val_split(ids: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Split a 1-D id tensor into a leading train part and a trailing validation part.

    Contiguous, not shuffled: random windows from either side then never overlap.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = len(ids) - int(round(len(ids) * val_fraction))
    return ids[:n_train], ids[n_train:]
