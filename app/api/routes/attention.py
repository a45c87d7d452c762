"""POST /api/attention: every map of a small input in one answer (JSON or NPY)."""

from __future__ import annotations

import torch
from fastapi import APIRouter
from starlette.responses import Response

from ...services.attention import DenseMaps, DenseResult
from ...services.errors import Invalid
from ..deps import ServicesDep
from ..errors import ERRORS
from ..schemas import TOKENS_DOC, AttentionRequest, AttentionResponse, Seq2SeqAttentionResponse
from ..transport import META_BOUND_DOC, OrjsonResponse, npy_response

router = APIRouter(prefix="/api", tags=["attention"])

NPY_DOC = """`format=npy`: the body is an NPY file of float16 weights `[L, H, Tq, Tk]`
(`np.load(io.BytesIO(r.content))`). Headers: `X-Shape` (`L,H,Tq,Tk`), `X-Dtype` (`float16`) and
`X-Attnlab-Meta`, base64url JSON (no padding) of `{model, backend, kind, tokens, token_ids, offsets, special,
segments, key_tokens, key_token_ids, key_offsets, key_special, key_segments, shape, layers, heads, timings,
dtype}` (and `target_text` for encoder-decoder models). Encoder-decoder models need `kind` with
`format=npy`. """ + META_BOUND_DOC


def _maps_json(m: DenseMaps) -> dict:
    return {"kind": m.kind, **m.token_fields(), "shape": list(m.weights.shape),
            "layers": m.layers, "heads": m.heads, "attention": m.weights.cpu().numpy()}


def _meta(result: DenseResult, m: DenseMaps) -> dict:
    meta = {"model": result.model, "backend": result.backend, "kind": m.kind, **m.token_fields(),
            "shape": list(m.weights.shape), "layers": m.layers, "heads": m.heads, "timings": result.timings}
    if result.target_text is not None:
        meta["target_text"] = result.target_text
    return meta


@router.post(
    "/attention",
    response_model=AttentionResponse | Seq2SeqAttentionResponse,
    response_class=OrjsonResponse,
    description="Dense maps of a small input, bounded by `dense_budget` weights (L·H·T²); past it the answer "
                "is 413 and the way is POST /api/runs plus tiles.\n\n" + NPY_DOC + "\n\n" + TOKENS_DOC,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
               **{k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)}},
)
async def attention(req: AttentionRequest, services: ServicesDep) -> Response:
    dtype = torch.float16 if req.format == "npy" else torch.float32
    result = await services.attention.dense(req.model, req.text, req.text_pair, req.backend, req.layers, req.heads,
                                            req.kind, dtype)
    seq2seq = result.family == "encoder-decoder"
    if req.format == "npy":
        if seq2seq and req.kind is None:
            raise Invalid("kind: encoder-decoder answers in NPY need kind=encoder|decoder|cross (one array each)")
        maps = next(iter(result.maps.values()))
        return npy_response(maps.weights, _meta(result, maps))
    head = {"model": result.model, "backend": result.backend, "timings": result.timings}
    if seq2seq:
        return OrjsonResponse({**head, "target_text": result.target_text,
                               **{k: _maps_json(m) for k, m in result.maps.items()}})
    return OrjsonResponse({**head, **_maps_json(next(iter(result.maps.values())))})

