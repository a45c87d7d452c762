"""Q and K of long runs kept as 16-bit integers with one float32 scale per vector.

A capture keeps the post-rotary queries and keys of every layer; for long runs that is most of its memory.
Half precision (float16) halves it but keeps only 11 significant bits of every value, relative to the value:
on SmolLM2, whose late layers have scores in the tens, the weights rebuilt from float16 Q and K differ from
the float32 model's by up to 4.9e-3 (measured at 1,789 tokens). ``Int16Vectors`` spends the same two bytes per
value on a symmetric integer grid scaled to each vector's largest entry (absmax / 32767), plus four bytes
per vector for the scale: every value then carries an absolute error of at most absmax / 65534, and the
weights stay within 8.7e-4 of the float32 model's on the same text (``bench/long_context.py --tolerance``).

``quantize`` returns both the kept form and the float32 values it stands for; attention runs on the latter
(``attnlab.models.dispatch.attend``), so the LSE the backend returns is that of the kept values and rebuilt
rows sum to 1 exactly as they did in the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LEVELS = 32767  # the symmetric int16 grid: -32767..32767 (-32768 unused, so negation is exact)


@dataclass(frozen=True)
class Int16Vectors:
    """Vectors along the last dimension as int16 ``values`` (..., d) times a float32 ``scale`` (..., 1).

    Indexing the leading dimensions gives float32 values (``rec.q[0, head, rows]``), so code that reads a
    record's Q or K does not need to know how they are kept. The last dimension cannot be indexed: a value
    alone has no meaning without its vector's scale, which is shared by the whole vector.
    """

    values: Tensor  # int16 (..., d)
    scale: Tensor  # float32 (..., 1)

    @classmethod
    def quantize(cls, x: Tensor) -> tuple[Int16Vectors, Tensor]:
        """(kept, used): ``x`` (..., d) float32 on the int16 grid, and the float32 values the kept form stands
        for (``kept[...]`` gives exactly ``used``). A zero vector keeps scale 0 and stays zero."""
        scale = x.detach().abs().amax(-1, keepdim=True) / LEVELS
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        values = torch.round(x.detach() / safe).clamp_(-LEVELS, LEVELS).to(torch.int16)
        used = values.to(torch.float32) * scale
        if x.requires_grad:  # straight through: the rounding has no gradient of its own
            used = x + (used - x).detach()
        return cls(values, scale.contiguous()), used

    def __getitem__(self, index) -> Tensor:
        index = index if isinstance(index, tuple) else (index,)
        if len(index) >= self.values.dim() or any(i is Ellipsis for i in index):
            raise IndexError("Int16Vectors index the leading dimensions only (each vector shares one scale)")
        return self.values[index].to(torch.float32) * self.scale[index]

    # -- what a record asks of its Q and K -------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size() + self.scale.numel() * self.scale.element_size()

    def float(self) -> Tensor:
        """All the vectors as float32 (memory: 4 bytes per value; for short runs and tests)."""
        return self.values.to(torch.float32) * self.scale

    def detach(self) -> Int16Vectors:
        return self


def nbytes(t: Tensor | Int16Vectors) -> int:
    """Bytes a kept tensor holds."""
    return t.nbytes if isinstance(t, Int16Vectors) else t.numel() * t.element_size()


def bytes_per_value(store: torch.dtype, head_dim: int) -> float:
    """Bytes per kept Q or K value for a capture kept in ``store`` (int16: the 2-byte value plus its share of
    the vector's 4-byte scale)."""
    if store == torch.int16:
        return 2 + 4 / head_dim
    return torch.empty((), dtype=store).element_size()
