"""How much of MiniLM's attention lands on [CLS]/[SEP], raw and weighted by value norm.

Kobayashi et al. 2020 ("Attention is Not Only a Weight", EMNLP, arXiv 2004.10102) found for BERT-base that
the large weights on [CLS] and [SEP] carry little: weighted by ||v_j W_O^h|| their share falls. This measures
the same on the bundled MiniLM-L6: for every layer, the share of each row's weight on [CLS]/[SEP] (rows
normalised to 1), averaged over the rows (queries that are not themselves [CLS]/[SEP]) and heads.

    python bench/value_weighting.py [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import attnlab  # noqa: E402
from attnlab.models.explain import ValueWeighted, value_norms  # noqa: E402

log = logging.getLogger("bench.value_weighting")

TEXTS = [
    "The cat sat on the mat because it was warm.",
    "Attention weights show where a head looks, not how much each token contributes.",
    "She told her brother that the train to Paris would leave at noon.",
    "In 1815 the French army was defeated at Waterloo by a coalition of armies.",
    "A transformer block adds the output of every head back into the residual stream.",
    "The committee approved the budget, but several members raised doubts about it.",
]


def shares(adapter, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw, weighted): (L,) share of each row's weight on [CLS]/[SEP], mean over rows and heads."""
    result = adapter.forward(text, keep_values=True)
    rec = result.recorder
    special = torch.tensor(result.special)
    rows = ~special  # queries that are ordinary tokens
    raw_l, weighted_l = [], []
    for layer in range(rec.layers("encoder")):
        record = rec.get("encoder", layer)
        w_o, _ = adapter.output_projection("encoder", layer)
        t = record.shape[0]
        raw_h, weighted_h = [], []
        for head in range(record.n_heads):
            alpha = rec.dense("encoder", layer, head)
            view = ValueWeighted(record, head, value_norms(record, head, w_o))
            weighted = view.block(slice(0, t), slice(0, t))
            raw_h.append(alpha[rows][:, special].sum(-1).mean())
            weighted_h.append(weighted[rows][:, special].sum(-1).mean())
        raw_l.append(torch.stack(raw_h).mean())
        weighted_l.append(torch.stack(weighted_h).mean())
    return torch.stack(raw_l), torch.stack(weighted_l)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    adapter = attnlab.load("minilm")
    raws, weighteds = [], []
    with torch.no_grad():
        for text in tqdm(TEXTS, desc="texts"):
            raw, weighted = shares(adapter, text)
            raws.append(raw)
            weighteds.append(weighted)
    raw, weighted = torch.stack(raws).mean(0), torch.stack(weighteds).mean(0)
    out = {"model": "minilm", "texts": len(TEXTS),
           "layers": [{"layer": i, "raw": round(float(r), 3), "value_weighted": round(float(w), 3)}
                      for i, (r, w) in enumerate(zip(raw, weighted))],
           "all_layers": {"raw": round(float(raw.mean()), 3), "value_weighted": round(float(weighted.mean()), 3)}}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print("share of each row's weight on [CLS]/[SEP] (MiniLM-L6, mean over rows and heads)")
    print("layer   raw    value-weighted")
    for row in out["layers"]:
        print(f"{row['layer']:>5}   {row['raw']:.3f}  {row['value_weighted']:.3f}")
    print(f"  all   {out['all_layers']['raw']:.3f}  {out['all_layers']['value_weighted']:.3f}")


if __name__ == "__main__":
    main()
