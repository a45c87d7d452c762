"""Model cards: what each model was trained on, the input it reads, and examples that show it at work.

A page that opens on a model fills its text box with the card's first example for that page, shows
``expects`` under the model select, and offers the other examples as "try this" links. Without a card
a model gets English prose, which a character-level checkpoint trained on ``rev:word`` cannot read
(it turns spaces and capitals into ``<unk>`` and decodes nonsense).

- from-scratch checkpoints: ``card.json`` beside ``config.json`` in their directory (``models/zoo/<name>/``),
  read by :func:`load_card`;
- bundled and hub models: :data:`PRETRAINED_CARDS`, keyed by model id.

``card.json``::

    {"expects": "one line: trained on ..., reads ...",
     "examples": [{"label": "reverse a word", "text": "rev:attention", "pages": ["seq2seq"]}],
     "focus": {"kind": "cross", "layer": 1, "head": 3, "why": "the head that mirrors the source"}}

``pages`` limits an example to some pages (``explorer``, ``heads``, ``generate``, ``seq2seq``, ``interventions``,
``backends``); empty means every page. ``focus`` names the model's most telling head, opened first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CARD_FILE = "card.json"


class CardError(ValueError):
    """A card.json that does not follow the format above (the message names the file and the field)."""


@dataclass(frozen=True)
class Example:
    """An input the model reads well; ``label`` says what it shows."""

    label: str
    text: str
    pages: tuple[str, ...] = ()  # empty: every page

    def on(self, page: str) -> bool:
        return not self.pages or page in self.pages


@dataclass(frozen=True)
class Focus:
    """The model's most telling head: where a page opens first, and why."""

    kind: str
    layer: int
    head: int
    why: str = ""


@dataclass(frozen=True)
class ModelCard:
    """One line on what the model was trained on and reads, examples, and its most telling head."""

    expects: str
    examples: tuple[Example, ...] = field(default_factory=tuple)
    focus: Focus | None = None

    def __post_init__(self) -> None:
        if not self.expects:
            raise CardError("expects: a card says in one line what the model was trained on and reads")

    def default(self, page: str) -> str | None:
        """The first example written for ``page``, else the first meant for every page (None when none is)."""
        for wanted in (lambda e: page in e.pages, lambda e: not e.pages):
            found = next((e.text for e in self.examples if wanted(e)), None)
            if found is not None:
                return found
        return None

    @classmethod
    def from_dict(cls, data: dict, source: str = "card") -> ModelCard:
        try:
            examples = tuple(Example(str(e["label"]), str(e["text"]), tuple(e.get("pages", ())))
                             for e in data.get("examples", ()))
            focus = data.get("focus")
            return cls(expects=str(data["expects"]), examples=examples,
                       focus=Focus(str(focus["kind"]), int(focus["layer"]), int(focus["head"]),
                                   str(focus.get("why", ""))) if focus else None)
        except (KeyError, TypeError, ValueError) as err:
            raise CardError(f"{source}: {err!r} (see attnlab.models.cards for the format)") from None


def load_card(directory: Path) -> ModelCard | None:
    """The card.json of a checkpoint directory, or None when it has none. Raises CardError when malformed."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CardError(f"{path}: not JSON ({err})") from None
    return ModelCard.from_dict(data, str(path))


_ENGLISH = "The cat sat on the mat. The cat sat on the mat."
_BERT_EXAMPLES = (
    Example("a repeated sentence: heads that find the earlier copy", _ENGLISH, ("explorer",)),
    Example("coreference: what does \u201cit\u201d look at?",
            "The animal didn't cross the street because it was too tired."),
    Example("names repeated: previous-token and duplicate-token heads",
            "Alice met Bob. Alice met Bob again. Alice met Bob again and again.", ("heads",)),
)
_GPT_EXAMPLES = (
    Example("indirect object: which heads carry \u201cMary\u201d to the answer?",
            "When Mary and John went to the store, John gave a drink to", ("interventions",)),
    Example("a story opening", "Once upon a time", ("generate",)),
    Example("a repeated sentence: induction heads copy what came next last time", _ENGLISH),
)

PRETRAINED_CARDS: dict[str, ModelCard] = {
    "minilm": ModelCard(
        "English text, lower-cased WordPiece, up to 512 tokens; a BERT sentence encoder "
        "(all-MiniLM-L6-v2, trained on 1B sentence pairs)", _BERT_EXAMPLES),
    "bert-base-uncased": ModelCard(
        "English text, lower-cased WordPiece, up to 512 tokens; masked-LM on BooksCorpus and Wikipedia",
        _BERT_EXAMPLES),
    "smollm2": ModelCard(
        "any text (byte-level BPE), up to 8192 tokens; an instruction-tuned Llama-style LM (SmolLM2-135M)",
        _GPT_EXAMPLES),
    "gpt2": ModelCard("any text (byte-level BPE), up to 1024 tokens; GPT-2 trained on English web text (WebText)",
                      _GPT_EXAMPLES),
    "distilgpt2": ModelCard("any text (byte-level BPE), up to 1024 tokens; distilled GPT-2 (OpenWebText)",
                            _GPT_EXAMPLES),
}
