"""Wire formats: orjson JSON, NPY float16 bodies, raw float16 / uint8 blocks with headers.

Binary answers carry their shape and dtype in headers (``X-Shape: 2,4,11,11``,
``X-Dtype: float16``) and, for uint8, the dequantisation scale (``X-Scale``:
``weight = byte * scale``, error at most scale/2). ``X-Attnlab-Meta`` holds the rest
(tokens, ranges, ...) as base64url-encoded JSON, so token text of any script survives
HTTP headers.

The meta header is bounded (``META_MAX_BYTES``): per-token lists grow with the tile, and
clients and proxies refuse large headers (Node's http parser at 16 KiB in all, nginx and
many proxies at 4-8 KiB). Past the bound the per-token lists are left out and ``omitted``
names them; they are in the same request's ``format=json`` answer and in the run's
``POST /api/runs`` answer.
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import numpy as np
import orjson
import torch
from fastapi.responses import JSONResponse
from starlette.responses import Response

log = logging.getLogger(__name__)

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
BINARY_MEDIA_TYPE = "application/octet-stream"
NPY_MEDIA_TYPE = "application/octet-stream"  # the body starts with the NPY magic
META_HEADER = "X-Attnlab-Meta"
META_MAX_BYTES = 8 * 1024  # the encoded header value at most; see the module docstring
# what grows with the number of tokens: left out, all together, when the meta would pass META_MAX_BYTES
PER_TOKEN_FIELDS = ("tokens", "token_ids", "offsets", "special", "segments", "key_tokens", "key_token_ids",
                    "key_offsets", "key_special", "key_segments", "row_tokens", "col_tokens", "target_text")
OMITTED_WHERE = "format=json, or the run's POST /api/runs answer (slice it by rows/cols)"
META_BOUND_DOC = (f"`X-Attnlab-Meta` is at most {META_MAX_BYTES // 1024} KiB: when its per-token lists would make it "
                  f"longer, they are left out and `omitted` names them ({', '.join(PER_TOKEN_FIELDS)}), with "
                  f"`omitted_from` saying where they are: {OMITTED_WHERE}.")
EXPOSED_HEADERS = ["X-Shape", "X-Dtype", "X-Scale", META_HEADER, "X-Request-ID", "Retry-After"]


class OrjsonResponse(JSONResponse):
    """JSON through orjson; numpy arrays serialise natively (no .tolist() round trip)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=ORJSON_OPTIONS)


def dumps(content: Any) -> str:
    return orjson.dumps(content, option=ORJSON_OPTIONS).decode()


def _b64_json(meta: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(meta, option=ORJSON_OPTIONS)).decode().rstrip("=")


def encode_meta(meta: dict) -> str:
    """``X-Attnlab-Meta``: base64url JSON (no padding), at most META_MAX_BYTES. A meta that would be longer
    goes without its per-token lists, and says so: ``"omitted": [names], "omitted_from": where to get them``."""
    value = _b64_json(meta)
    if len(value) <= META_MAX_BYTES:
        return value
    omitted = [k for k in PER_TOKEN_FIELDS if k in meta]
    short = {k: v for k, v in meta.items() if k not in omitted} | {"omitted": omitted, "omitted_from": OMITTED_WHERE}
    value = _b64_json(short)
    if len(value) > META_MAX_BYTES:  # the rest is a few fixed fields: a new one that grows belongs in the list
        log.warning("%s is %d bytes without its per-token lists (fields %s)", META_HEADER, len(value), sorted(short))
    return value


def decode_meta(value: str) -> dict:
    """Client side of ``X-Attnlab-Meta`` (tests, scripts)."""
    return orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


Weights = np.ndarray | torch.Tensor


def _tensor(w: Weights) -> torch.Tensor:
    return w if isinstance(w, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(w))


def to_f16(w: Weights) -> np.ndarray:
    """float16, converted by torch (numpy's astype(float16) is ~30x slower, no SIMD)."""
    return _tensor(w).to(torch.float16).contiguous().cpu().numpy()


def quantize_u8(w: Weights) -> tuple[np.ndarray, float]:
    """Linear uint8 of weights in [0, max]: byte = round(w / scale), scale = max / 255."""
    t = _tensor(w).float()
    top = float(t.max()) if t.numel() else 0.0
    scale = top / 255.0 if top > 0 else 1.0 / 255.0
    q = torch.round(t / scale).clamp_(0, 255).to(torch.uint8)
    return q.contiguous().cpu().numpy(), scale


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
