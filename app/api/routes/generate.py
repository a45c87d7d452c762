"""POST /api/generate: a generation trace, streamed as Server-Sent Events or as one JSON."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse
from starlette.responses import Response

from ...services.errors import ServiceError
from ...services.generation import GenerateParams
from ..deps import ServicesDep
from ..errors import ERRORS, status_of
from ..schemas import TOKENS_DOC, GenerateRequest, GenerateResponse
from ..transport import OrjsonResponse, dumps

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["generation"])

SSE_DOC = """With `stream: true` the answer is `text/event-stream`: first one `prompt` event (`{model, backend,
prompt_tokens, prompt_token_ids, prompt_offsets, prompt_special}`: the context a page labels before any token
comes), then one `token` event per new token, its data a
GenerateStepOut JSON (`{step, token, token_id, text, offsets, relabel, top:[{token, token_id, prob}], context_len,
attention:[L][H][t]}`), then one `summary` event (GenerateSummary). An `error` event carries `{detail}` if the run
fails midway. Without stream: GenerateResponse `{steps, summary}`. Deterministic for a seed; stops at
`max_new_tokens`, end of sequence, the model's positions, `generate_timeout_s`, or when the client goes.

**Text.** `summary.generated_text` is the tokenizer's decoding of all generated ids, control tokens left out (a
generated `<eos>` or `<|im_end|>` is no part of the text, like BERT's `[CLS]`: its step's `text` is empty and its
`offsets` null), and `summary.text` is `prompt + generated_text`, exactly. Each step's `text` is the text that
step completes: the bytes of a character split across tokens (CJK, emoji in byte-level vocabularies) are held
back until the step that completes it, so
`prompt + ''.join(step.text) + summary.tail_text == summary.text` (`tail_text` is a character the last step left
unfinished, written as the decoder writes it, U+FFFD). A step's `offsets` index `generated_text`; its `token` is
its label as known at that step, and `relabel` gives the final labels of earlier steps whose character it
completed; `summary.tokens` are the final labels. Top-k entries carry `token_id`: match the chosen one by id."""


# OpenAPI 3.1 documents a text/event-stream by the schema of one event (3.2 adds itemSchema)
SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["prompt", "token", "summary", "error"]},
        "data": {"type": "string", "description": "JSON: the prompt's tokens (prompt), GenerateStepOut (token), "
                                                   "GenerateSummary (summary), "
                                                   "{detail, status} (error)"},
    },
}


@router.post("/generate", response_model=GenerateResponse, response_class=OrjsonResponse,
             description=SSE_DOC + "\n\n" + TOKENS_DOC,
             responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
                        **{k: ERRORS[k] for k in (404, 409, 413, 422, 429, 503)}})
async def generate(req: GenerateRequest, request: Request, services: ServicesDep) -> Response:
    params = GenerateParams(req.model, req.prompt, req.max_new_tokens, req.temperature, req.top_k, req.top_p,
                            req.seed, req.backend, req.n_top)
    service = services.generation
    await service.prepare(params)  # bad parameters fail as 4xx before a stream starts
    if not req.stream:
        return OrjsonResponse(await service.collect(params, request.is_disconnected))

    async def events():
        try:
            async for name, event in service.events(params, request.is_disconnected):
                yield {"event": name, "data": dumps(event)}
        except ServiceError as err:  # e.g. the model's queue filled up while this stream waited
            yield {"event": "error", "data": dumps({"detail": err.detail, "status": status_of(err)})}
        except Exception:  # a bug: the 200 is already sent, so say it in the stream, and log it
            log.exception("generation stream failed")
            yield {"event": "error", "data": dumps({"detail": "internal error while generating; see the server log",
                                                    "status": 500})}

    return EventSourceResponse(events(), ping=services.settings.sse_ping_s, headers={"Cache-Control": "no-store"})
