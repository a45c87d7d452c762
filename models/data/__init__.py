"""Data for the from-scratch models: corpora, synthetic tasks, and corruption for the objectives.

- ``corpora``: ``load_corpus`` (austen, wikitext-2, reversal, copy, or a path), ``train_val_split``;
- ``synthetic``: ``repeated_segments`` (induction), ``reversal_pairs`` / ``copy_pairs`` (seq2seq);
- ``corruption``: ``mask_tokens`` (BERT MLM), ``span_corrupt`` / ``fill_spans`` (T5), ``IGNORE_INDEX``.

Batching lives with the trainer (``attnlab.models.training.batches``).
"""

from .corpora import (
    AUSTEN_BOOKS,
    CORPORA,
    CorpusUnavailable,
    austen_books,
    corpus_cache_dir,
    download_austen_deb,
    load_austen,
    load_corpus,
    load_wikitext2,
    read_austen_deb,
    read_r_lazyload,
    train_val_split,
)
from .corruption import IGNORE_INDEX, fill_spans, mask_tokens, span_corrupt
from .synthetic import LOWERCASE, copy_pairs, pairs_text, repeated_segments, reversal_pairs

__all__ = [
    "AUSTEN_BOOKS", "CORPORA", "IGNORE_INDEX", "LOWERCASE", "CorpusUnavailable", "austen_books", "copy_pairs",
    "corpus_cache_dir", "download_austen_deb", "fill_spans", "load_austen", "load_corpus", "load_wikitext2",
    "mask_tokens", "pairs_text", "read_austen_deb", "read_r_lazyload", "repeated_segments", "reversal_pairs",
    "span_corrupt", "train_val_split",
]
