"""Attention capture as (Q, K, LSE), and the maps read back from it.

- ``recorder``: ``capture()`` (a context manager), ``Recorder`` and ``AttentionRecord``:
  per attention call the post-rotary Q and K, the lazy mask/bias spec and the row LSE;
  exact tiles and dense maps from them. ``capture_dtype(torch.int16)`` about halves the memory of long runs
  (``packed``: int16 with a float32 scale per vector); ``capture_pools(sizes)`` has flash gather every head's
  whole-map overview while it runs.
- ``progress``: ``on_record(hook)`` reports each recorded layer; a hook raising ``Cancelled``
  stops a long forward between layers.
- ``tiles``: pooled overviews (max / mean) computed block by block, dense maps of many
  heads and layers written in place.
"""

from .progress import Cancelled, on_record
from .recorder import AttentionRecord, Kind, Recorder, capture, capture_dtype, capture_pools, current_recorder
from .tiles import POOL_MODES, dense_heads, pooled_overview, stack_maps

__all__ = [
    "POOL_MODES", "AttentionRecord", "Cancelled", "Kind", "Recorder", "capture", "capture_dtype", "capture_pools",
    "current_recorder",
    "dense_heads", "on_record", "pooled_overview", "stack_maps",
]
