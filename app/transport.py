"""Wire formats: orjson JSON, NPY float16 bodies, raw float16 / uint8 blocks with headers.

Binary answers carry their shape and dtype in headers (``X-Shape: 2,4,11,11``,
``X-Dtype: float16``) and, for uint8, the dequantisation scale (``X-Scale``:
``weight = byte * scale``, error at most scale/2). ``X-Attnlab-Meta`` holds the rest
(tokens, ranges, ...) as base64url-encoded JSON, so token text of any script survives
HTTP headers.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import orjson
import torch
from fastapi.responses import JSONResponse
from starlette.responses import Response

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
BINARY_MEDIA_TYPE = "application/octet-stream"
NPY_MEDIA_TYPE = "application/octet-stream"  # the body starts with the NPY magic
META_HEADER = "X-Attnlab-Meta"
EXPOSED_HEADERS = ["X-Shape", "X-Dtype", "X-Scale", META_HEADER, "X-Request-ID", "Retry-After"]


class OrjsonResponse(JSONResponse):
    """JSON through orjson; numpy arrays serialise natively (no .tolist() round trip)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=ORJSON_OPTIONS)


def dumps(content: Any) -> str:
    return orjson.dumps(content, option=ORJSON_OPTIONS).decode()


def encode_meta(meta: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(meta, option=ORJSON_OPTIONS)).decode().rstrip("=")


def decode_meta(value: str) -> dict:
    """Client side of ``X-Attnlab-Meta`` (tests, scripts)."""
    return orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


Weights = np.ndarray | torch.Tensor


def _tensor(w: Weights) -> torch.Tensor:
    return w if isinstance(w, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(w))


def to_f16(w: Weights) -> np.ndarray:
    """float16, converted by torch (numpy's astype(float16) is ~30x slower, no SIMD)."""
    return _tensor(w).to(torch.float16).contiguous().numpy()


def quantize_u8(w: Weights) -> tuple[np.ndarray, float]:
    """Linear uint8 of weights in [0, max]: byte = round(w / scale), scale = max / 255."""
    t = _tensor(w).float()
    top = float(t.max()) if t.numel() else 0.0
    scale = top / 255.0 if top > 0 else 1.0 / 255.0
    q = torch.round(t / scale).clamp_(0, 255).to(torch.uint8)
    return q.contiguous().numpy(), scale


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _shape_headers(array: np.ndarray, meta: dict) -> dict[str, str]:
    return {"X-Shape": ",".join(map(str, array.shape)), "X-Dtype": str(array.dtype), META_HEADER: encode_meta(meta)}


def npy_response(weights: Weights, meta: dict) -> Response:
    """An NPY file of float16 weights (``np.load(io.BytesIO(body))``)."""
    array = to_f16(weights)
    return Response(npy_bytes(array), media_type=NPY_MEDIA_TYPE,
                    headers=_shape_headers(array, {**meta, "dtype": "float16"}))


def block_response(weights: Weights, fmt: str, meta: dict) -> Response:
    """Raw little-endian bytes, C order: ``f16`` float16 or ``u8`` quantised with ``X-Scale``."""
    if fmt == "u8":
        array, scale = quantize_u8(weights)
        meta = {**meta, "dtype": "uint8", "scale": scale}
        headers = {**_shape_headers(array, meta), "X-Scale": repr(scale)}
    else:
        array = to_f16(weights)  # little-endian on every platform torch runs on
        meta = {**meta, "dtype": "float16"}
        headers = _shape_headers(array, meta)
        headers["X-Dtype"] = "float16"
    return Response(np.ascontiguousarray(array).tobytes(), media_type=BINARY_MEDIA_TYPE, headers=headers)
