"""Lab 5: a small BERT-style encoder on Jane Austen (masked LM with 80/10/10 replacement).

Reported: validation masked-LM loss (at BERT's 15%), accuracy on the masked tokens next to
the unigram baseline (always guessing the most frequent token), and fill-mask examples
(the top guesses for each ``<mask>`` in a few sentences).

What makes it learn in a few CPU-minutes (measured; the first version stayed at the
unigram plateau, val loss 6.06 against a unigram entropy of 6.22, every guess ``"\\n"``):

- a masked LM gets a training signal from the selected tokens only, so at 15% it sees 7x
  fewer labels per step than the causal LM lab does; training masks 30% (Wettig et al.
  2022, "Should You Mask 15% in Masked Language Modeling?") and reports validation at 15%;
- the vocabulary projection is applied only at the selected positions while training
  (the loss is the same; the forward is ~20% cheaper at a 2048-token vocabulary);
- rotary positions instead of a learned table, which a short run has no time to learn;
- fill-mask puts ``<mask>`` where a whole byte-level token stands, space included
  (``" <mask>"`` -> one ``"Ġword"`` slot, as in training), and never guesses a special token.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..architectures import Encoder, ModelOutput
from ..config import TransformerConfig
from ..data import IGNORE_INDEX
from ..training import Probe, TrainConfig, Trainer, evaluate_loss, lm_batches
from .common import bpe_corpus, checkpoint_bytes, finite, prepare_dir, set_threads, training_summary, write_results

log = logging.getLogger(__name__)

FILL_MASK = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a <mask>.",
    "It is a truth universally <mask>, that a single man in possession of a good fortune, must be in want of a wife.",
    "\"My dear Mr. Bennet,\" said his <mask> to him one day.",
    "She was <mask> to see him.",
    "I do not <mask> what you mean.",
    "He had been in love with her <mask> the first.",
)


class MLMEncoder(Encoder):
    """An ``Encoder`` whose loss projects onto the vocabulary only where there is a label.

    The weights and the saved checkpoint are a plain ``Encoder``'s; only the training
    forward (``labels`` given) differs: its ``logits`` are (n_labelled, vocab).
    """

    def forward(self, ids, attention_mask=None, segments=None, labels=None, keep_hidden: bool = False) -> ModelOutput:
        if labels is None or keep_hidden:
            return super().forward(ids, attention_mask, segments, labels, keep_hidden)
        padding = attention_mask.bool() if attention_mask is not None else None
        x, _ = self.encoder(ids, padding, segments)
        selected = labels != IGNORE_INDEX
        logits = self.head(x[selected])
        if logits.shape[0] == 0:  # nothing selected: a zero loss that still has a graph
            return ModelOutput(logits, x, loss=x.sum() * 0.0)
        return ModelOutput(logits, x, loss=F.cross_entropy(logits.float(), labels[selected]))


def reinit(model: torch.nn.Module, std: float | None) -> None:
    """Linear layers re-drawn from N(0, std^2); None = 1/sqrt(fan_in).

    The masked position's own input is ``<mask>``: everything it predicts must come
    through attention, a product of small value and output projections. At GPT's std 0.02
    on a 128-wide model that product starts near a saddle and the run sits at the unigram
    loss for hundreds of steps; 1/sqrt(fan_in) (PyTorch's own scale) leaves it at once.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=std if std is not None else module.in_features ** -0.5)


def mask_slots(text: str, mask: str = "<mask>") -> str:
    """Byte-level BPE keeps a word's leading space in its token (``"Ġwife"``), and training
    masks such whole tokens; so the space before a typed ``<mask>`` belongs to the slot."""
    return re.sub(r" (?=" + re.escape(mask) + ")", "", text)


@torch.no_grad()
def fill_mask(model, tok, text: str, top_k: int = 5) -> dict:
    """The model's top guesses (special tokens excluded) at each ``<mask>`` of ``text``."""
    ids = tok.encode(mask_slots(text))
    device = next(model.parameters()).device
    logits = model(torch.tensor([ids], device=device)).logits[0].float()
    specials = sorted(set(tok.special_ids.values()))
    logits[:, specials] = float("-inf")
    guesses = []
    for pos in [i for i, t in enumerate(ids) if t == tok.mask_id]:
        probs = logits[pos].softmax(-1)
        top = torch.topk(probs, top_k)
        guesses.append([{"token": tok.decode([int(i)]).strip() or tok.decode([int(i)]), "p": round(float(p), 4)}
                        for p, i in zip(top.values, top.indices)])
    return {"text": text, "guesses": guesses}


@torch.no_grad()
def masked_accuracy(model, batches, n_batches: int, most_frequent: int) -> dict:
    """Top-1 and top-5 accuracy on the selected tokens of validation batches, and the
    unigram baseline's (always the most frequent training token) on the same tokens."""
    model.eval()
    hits = hits5 = unigram = total = 0
    for i in range(n_batches):
        batch = batches(i)
        logits = Encoder.forward(model, batch["ids"]).logits
        selected = batch["labels"] != IGNORE_INDEX
        target = batch["labels"][selected]
        top5 = logits[selected].topk(5, dim=-1).indices
        hits += int((top5[:, 0] == target).sum())
        hits5 += int((top5 == target[:, None]).any(-1).sum())
        unigram += int((target == most_frequent).sum())
        total += int(selected.sum())
    return {"masked_tokens": total, "accuracy": hits / max(total, 1), "top5_accuracy": hits5 / max(total, 1),
            "unigram_accuracy": unigram / max(total, 1)}


def run(out_dir: str | Path, quick: bool = False, *, steps: int | None = None, corpus: str = "austen",
        vocab_size: int | None = None, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
        positional: str = "rope", block_size: int = 128, batch_size: int = 16, lr: float = 1e-3,
        mlm_prob: float = 0.3, init_std: float | None = None, threads: int | None = 1, seed: int = 0) -> dict:
    started = time.perf_counter()
    set_threads(threads)
    torch.manual_seed(seed)
    out = prepare_dir(out_dir)
    data = bpe_corpus(corpus, vocab_size or (512 if quick else 2048), quick)
    tok, train_ids, val_ids = data.tokenizer, data.train_ids, data.val_ids
    counts = torch.bincount(train_ids, minlength=tok.vocab_size).double()
    freq = counts[counts > 0] / counts.sum()
    unigram_entropy = float(-(freq * freq.log()).sum())
    config = TransformerConfig(family="encoder", vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers,
                               n_heads=n_heads, positional=positional, max_positions=max(block_size, 128),
                               mlm_transform=True, pad_token_id=tok.pad_id)
    model = MLMEncoder(config)
    reinit(model, init_std)
    steps = steps or (10 if quick else 1600)
    train_cfg = TrainConfig(steps=steps, lr=lr, warmup=min(100, steps // 10), log_every=10,
                            snapshot_every=max(steps // 10, 1), seed=seed, progress=not quick)
    # validation masks BERT's 15%, so its loss compares with any other 15% run
    val = lm_batches(val_ids, block_size, batch_size, "mlm", tokenizer=tok, seed=seed + 1)
    n_val = 2 if quick else 32
    train = lm_batches(train_ids, block_size, batch_size, "mlm", tokenizer=tok, seed=seed, mlm_prob=mlm_prob)
    probe = mask_slots(FILL_MASK[0])
    trainer = Trainer(model, train_cfg, train, out_dir=out, tokenizer=tok,
                      probes=[Probe.from_text("austen", probe, tok)],
                      eval_fn=lambda m: evaluate_loss(m, val, n_val), save_dtype=torch.float16, resumable=False,
                      extra_state={"lab": "mlm", "corpus": corpus})
    result = trainer.train()
    model.eval()
    accuracy = masked_accuracy(model, val, n_val, int(counts.argmax()))
    examples = [fill_mask(model, tok, t) for t in FILL_MASK]
    body = {
        **training_summary(result, data),
        "unigram_entropy": finite(unigram_entropy),
        **{f"val_{k}" if k != "masked_tokens" else "val_masked_tokens": v for k, v in accuracy.items()},
        "masking": (f"training: {mlm_prob:.0%} of tokens, validation: 15%; of those 80% <mask>, "
                    "10% a random non-special token, 10% unchanged; loss on the selected tokens only"),
        "config": config.to_dict(),
        "train_config": train_cfg.to_dict(),
        "n_params": model.num_parameters(),
        "fill_mask": examples,
    }
    body["checkpoint_bytes"] = checkpoint_bytes(out)
    log.info("mlm: val loss %.3f (unigram entropy %.3f), masked accuracy %.3f (unigram %.3f); %s", body["val_loss"],
             unigram_entropy, accuracy["accuracy"], accuracy["unigram_accuracy"],
             [e["guesses"][0][0]["token"] for e in examples])
    return write_results(out, "mlm", quick, started, body)
