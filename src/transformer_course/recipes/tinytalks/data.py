"""Stages 2 and 3 of the TinyTalks capstone: the Q&A and dialogue framings of the pairs, samples
and their encoding."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...utils.dataset import TINYTALKS_LEVELS, QAPair, load_tinytalks
from ...utils.tokenizer import BOS_ID, PAD_ID, CharTokenizer

__all__ = ["FRAMINGS", "DIALOGUE_LINKS", "Sample", "format_qa", "qa_prompt", "format_exchange",
           "dialogue_prompt", "check_levels", "load_pairs", "make_samples", "build_tokenizer",
           "encode_sample", "TARGET_LOSS"]

IGNORE = -100  # target id that F.cross_entropy skips: padding and context positions


# --- stages 2 and 3: data -----------------------------------------------------------------------

FRAMINGS = ("qa", "dialogue")
TARGET_LOSS = {"qa": 1.3, "dialogue": 1.5}  # the validation-loss targets of the capstone

# TinyTalks' pairs are independent, but some level-5 ones only make sense after another:
# "I also have a sister." answers "Do you have other siblings?", the reply to "I have a
# brother.". Each entry maps such a follow-up to the question of the exchange it continues.
# A follow-up is shown after that exchange only when the exchange is in the training split or
# in the follow-up's own split, so validation and test text never reach training.
# ("Yes, it is very fast." follows "I have a new phone.", but one is in train and the other
# in val, so that link could never be used and is left out.)
DIALOGUE_LINKS = {
    "I also have a sister.": "I have a brother.",
    "I like pepperoni.": "I like pizza.",
    "I am fine.": "It is morning.",
    "I like adventure books.": "I like reading.",
    "I saw an action movie.": "I saw a movie.",
    "Yes, I am going to the beach.": "It is sunny today.",
    "I will be ten.": "My birthday is tomorrow.",
    "I like math.": "I go to school.",
    "It is going well.": "I am learning English.",
    "I play puzzle games.": "I play video games.",
    "His name is Max.": "I have a dog.",  # val, after a training exchange
    "I like pop music.": "I like music.",  # test
    "Yes, I did!": "I visited Paris.",  # test
}


def format_qa(pair: QAPair) -> str:
    """The Q&A training text of a pair: ``"Q: question\\nA: answer\\n"``; the final newline
    tells the model (and the generation loop) that the answer is over."""
    return f"Q: {pair.question}\nA: {pair.answer}\n"


def qa_prompt(question: str) -> str:
    """``"Q: question\\nA:"``: the model continues with ``" answer\\n"``."""
    return f"Q: {question.strip()}\nA:"


def format_exchange(question: str, answer: str) -> str:
    """One dialogue exchange: ``"User: question\\nBot: answer\\n"``."""
    return f"User: {question}\nBot: {answer}\n"


def dialogue_prompt(question: str, previous: tuple[str, str] | None = None) -> str:
    """The previous exchange (if any), then ``"User: question\\nBot:"``."""
    context = format_exchange(*previous) if previous else ""
    return f"{context}User: {question.strip()}\nBot:"


def check_levels(levels: int) -> int:
    """Levels 1..``levels`` are used; anything outside 1-5 is a clear error."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 5:
        names = ", ".join(f"{k}: {v}" for k, v in TINYTALKS_LEVELS.items())
        raise ValueError(f"levels must be an integer from 1 to 5 ({names}), got {levels!r}")
    return levels


def load_pairs(levels: int = 5, splits: Sequence[str] = ("train", "val", "test")
               ) -> dict[str, list[QAPair]]:
    """The official TinyTalks splits (210/45/46 pairs), keeping difficulty levels 1..levels."""
    check_levels(levels)
    return {split: load_tinytalks(split, levels=levels) for split in splits}


@dataclass(frozen=True)
class Sample:
    """One training or evaluation sequence: ``context`` is read but not scored (in a dialogue,
    the previous exchange; empty in Q&A), ``text`` is the exchange the model learns to write.
    ``prompt`` is the part of ``text`` before the reply, e.g. ``"Q: Hi!\\nA:"``."""

    context: str
    text: str
    prompt: str
    pair: QAPair


def _sample(pair: QAPair, framing: str, previous: QAPair | None = None) -> Sample:
    if framing == "qa":
        return Sample("", format_qa(pair), qa_prompt(pair.question), pair)
    if framing == "dialogue":
        context = format_exchange(previous.question, previous.answer) if previous else ""
        return Sample(context, format_exchange(pair.question, pair.answer),
                      dialogue_prompt(pair.question), pair)
    raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")


def _linked_previous(pair: QAPair, available: dict[str, QAPair]) -> QAPair | None:
    return available.get(DIALOGUE_LINKS.get(pair.question, ""))


def make_samples(
    pairs: Sequence[QAPair],
    framing: str,
    context_pairs: Sequence[QAPair] = (),
    rng: random.Random | None = None,
    random_context: float = 0.5,
) -> list[Sample]:
    """Turn pairs into samples of a framing.

    Q&A: each pair on its own. Dialogue: a follow-up (see :data:`DIALOGUE_LINKS`) comes after
    the exchange it continues, looked up in ``pairs`` and ``context_pairs`` (pass the training
    pairs when making validation samples). With an ``rng`` (training), any other pair comes
    after a random other exchange of ``pairs`` with probability ``random_context`` (a change
    of topic the model must learn to ignore) and opens the conversation otherwise; without one
    (evaluation) it always opens the conversation, so evaluation is deterministic.
    """
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    if framing == "qa":
        return [_sample(p, "qa") for p in pairs]
    available = {p.question: p for p in [*context_pairs, *pairs]}
    samples = []
    for i, pair in enumerate(pairs):
        previous = _linked_previous(pair, available)
        if previous is None and rng is not None and len(pairs) > 1 and (
                rng.random() < random_context):
            other = rng.randrange(len(pairs) - 1)
            previous = pairs[other + (other >= i)]  # any pair but this one
        samples.append(_sample(pair, "dialogue", previous))
    return samples


def build_tokenizer(train_pairs: Sequence[QAPair], framing: str) -> CharTokenizer:
    """The character vocabulary of the training split's text in ``framing``.

    The unknown-character rule: a character that never occurs in the training text (a "é",
    a "#") is encoded as ``<unk>`` (id 1). The model never saw ``<unk>``, so such characters
    carry no meaning for it; :meth:`TinyTalksModel.unknown_characters` lists them and the
    ``chat`` command warns about them.
    """
    return CharTokenizer.fit([_sample(p, framing).text for p in train_pairs])


def encode_sample(tokenizer: CharTokenizer, sample: Sample, context_length: int
                  ) -> tuple[list[int], list[int]]:
    """Input ids and target ids of a sample, at most ``context_length`` of each.

    ``<s> context text`` is shifted by one position as usual (target ``t`` is input ``t + 1``);
    the targets inside ``context`` become ``IGNORE`` (-100), so only ``text`` is scored. A
    sequence longer than the model's context loses the oldest context characters, the same
    cropping :func:`~transformer_course.models.generation.generate` applies when it answers.
    """
    if len(sample.text) > context_length:
        raise ValueError(
            f"the exchange {sample.text!r} has {len(sample.text)} characters, more than the "
            f"context length {context_length}"
        )
    ids = [BOS_ID] + tokenizer.encode(sample.context + sample.text)
    first_scored = 1 + len(sample.context)  # index in ids of the first character of text
    inputs = ids[:-1]
    targets = [t if i + 1 >= first_scored else IGNORE for i, t in enumerate(ids[1:])]
    return inputs[-context_length:], targets[-context_length:]


def _collate(encoded: Sequence[tuple[list[int], list[int]]], device: torch.device
             ) -> tuple[Tensor, Tensor]:
    """Right-pad to the longest sample: ``x`` with ``<pad>``, ``y`` with ``IGNORE``; both
    ``(batch, longest)``. Causal attention never lets a real position see the padding after
    it, so no padding mask is needed."""
    width = max(len(x) for x, _ in encoded)
    x = torch.full((len(encoded), width), PAD_ID, dtype=torch.long)
    y = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, (inputs, targets) in enumerate(encoded):
        x[row, : len(inputs)] = torch.tensor(inputs)
        y[row, : len(targets)] = torch.tensor(targets)
    return x.to(device), y.to(device)
