"""Forward and backward time per component (embedding, attention, feed-forward, norms, head).

Works for our models and for Hugging Face ones: modules are sorted into components
by their class name, only the outermost match is timed (an attention module's inner
Linear layers count as attention), and each timed region is also a
``torch.profiler.record_function`` range, so a profiler trace shows the same names.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

COMPONENTS = {
    "embedding": re.compile(r"Embedding", re.I),
    "attention": re.compile(r"Attention", re.I),
    "feed_forward": re.compile(r"FeedForward|MLP|Intermediate|BertOutput|DenseReluDense|LayerFF", re.I),
    "norm": re.compile(r"LayerNorm|RMSNorm|Norm$", re.I),
    "head": re.compile(r"LMHead|lm_head|Pooler|PredictionHead|OnlyMLMHead", re.I),
}


def classify(name: str, module: nn.Module) -> str | None:
    cls = type(module).__name__
    if name.endswith("lm_head") or name == "head":
        return "head"
    if cls == "Linear":
        return None  # only as part of a bigger component
    for component, pattern in COMPONENTS.items():
        if pattern.search(cls):
            return component
    return None


@dataclass
class Profile:
    forward_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    backward_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    total_forward_ms: float = 0.0
    total_backward_ms: float = 0.0
    tokens: int = 0

    def to_dict(self) -> dict:
        comps = sorted(set(self.forward_ms) | set(self.backward_ms))
        rows = [{"component": c, "forward_ms": self.forward_ms.get(c, 0.0), "backward_ms": self.backward_ms.get(c, 0.0)}
                for c in comps]
        other_f = self.total_forward_ms - sum(self.forward_ms.values())
        other_b = self.total_backward_ms - sum(self.backward_ms.values())
        rows.append({"component": "other", "forward_ms": max(other_f, 0.0), "backward_ms": max(other_b, 0.0)})
        return {"tokens": self.tokens, "total_forward_ms": self.total_forward_ms,
                "total_backward_ms": self.total_backward_ms, "components": rows}


def _outermost(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    chosen: list[tuple[str, str, nn.Module]] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in taken):
            continue
        component = classify(name, module)
        if component is not None:
            chosen.append((name, component, module))
            taken.append(name)
    return chosen


def profile_model(model: nn.Module, inputs: dict, repeats: int = 3, backward: bool = True) -> Profile:
    """Median-free simple profile: the mean over ``repeats`` runs after one warm-up.

    ``inputs`` are keyword arguments of the model's forward; the loss for the backward
    pass is the mean of the first floating output.
    """
    prof = Profile(tokens=int(next(v for v in inputs.values() if torch.is_tensor(v)).numel()))
    starts: dict[int, float] = {}
    ranges: dict[int, torch.autograd.profiler.record_function] = {}
    active = {"on": False}
    handles = []

    def pre(component: str, key: int):
        def hook(module, args, kwargs):
            if active["on"]:
                ranges[key] = torch.autograd.profiler.record_function(f"attnlab::{component}")
                ranges[key].__enter__()
                starts[key] = time.perf_counter()
        return hook

    def post(component: str, key: int):
        def hook(module, args, kwargs, output):
            if not (active["on"] and key in starts):
                return
            prof.forward_ms[component] += (time.perf_counter() - starts.pop(key)) * 1e3
            ranges.pop(key).__exit__(None, None, None)
            if backward:
                _time_backward(component, module, [*args, *kwargs.values()], output)
        return hook

    def _time_backward(component: str, module: nn.Module, inputs: list, output) -> None:
        # Backward of a module runs from the moment its output's gradient arrives until the
        # gradients of its inputs (or, for embeddings, its weights) are ready. Tensor hooks see
        # both ends whether the module was called with positional or keyword tensors (HF
        # attention modules take keywords, which full backward hooks do not see).
        out = _first_float(output) if not torch.is_tensor(output) else output
        ends = [t for t in inputs if torch.is_tensor(t) and t.requires_grad] or \
            [p for p in module.parameters() if p.requires_grad][:1]
        if not out.requires_grad or not ends:
            return
        mark: dict[str, float] = {}

        def started(grad):
            mark["start"] = time.perf_counter()

        def ended(grad):
            if "start" in mark and "end" not in mark:
                mark["end"] = time.perf_counter()
                prof.backward_ms[component] += (mark["end"] - mark["start"]) * 1e3

        out.register_hook(started)
        for t in ends:
            t.register_hook(ended)

    for i, (_name, component, module) in enumerate(_outermost(model)):
        handles.append(module.register_forward_pre_hook(pre(component, i), with_kwargs=True))
        handles.append(module.register_forward_hook(post(component, i), with_kwargs=True))

    def once() -> tuple[float, float]:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = model(**inputs)
        t1 = time.perf_counter()
        if backward:
            loss = _first_float(out).float().mean()
            loss.backward()
        return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3

    try:
        model.train(False)
        once()  # warm-up: allocator, lazy init
        active["on"] = True
        for _ in range(repeats):
            f, b = once()
            prof.total_forward_ms += f
            prof.total_backward_ms += b if backward else 0.0
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    for table in (prof.forward_ms, prof.backward_ms):
        for k in table:
            table[k] /= repeats
    prof.total_forward_ms /= repeats
    prof.total_backward_ms /= repeats
    return prof


def _first_float(out) -> torch.Tensor:
    if torch.is_tensor(out):
        return out
    for name in ("logits", "last_hidden_state", "hidden"):
        value = getattr(out, name, None)
        if torch.is_tensor(value):
            return value
    if isinstance(out, (tuple, list)):
        return next(t for t in out if torch.is_tensor(t) and t.is_floating_point())
    raise TypeError(f"cannot find a tensor output in {type(out).__name__}")
