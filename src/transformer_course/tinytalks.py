"""The TinyTalks GPT capstone: the attention proof, Q&A generation and dialogue.

Three stages, each a function returning its numbers and histories, and a command of
``transformer-course tinytalks`` (the flags mirror the TinyTalks "milestone" scripts):

1. **Attention proof** (:func:`run_proof`): a small encoder-decoder Transformer learns to
   reverse sequences of symbols, ``1 2 3 4 -> 4 3 2 1``. Output position ``i`` must read input
   position ``n - 1 - i`` whatever the symbols are, which only works if attention addresses
   the source by position; the same model with uniform attention weights
   (:func:`~transformer_course.multihead.use_uniform_attention`) cannot learn it.
2. **Q&A** (``framing="qa"``): a character-level GPT trained on TinyTalks pairs written as
   ``"Q: question\\nA: answer\\n"``, prompted with ``"Q: question\\nA:"``.
3. **Dialogue** (``framing="dialogue"``): the same pairs as turns of a conversation,
   ``"User: ...\\nBot: ...\\n"``, where the context carries the previous exchange.

:func:`train_tinytalks` trains stages 2 and 3 for a budget of steps, epochs or minutes;
:class:`TinyTalksModel` answers (:meth:`~TinyTalksModel.reply`), shows its attention
(:meth:`~TinyTalksModel.attention`) and saves itself; :func:`load_tinytalks_model` reads a
checkpoint back.

Data: :func:`~transformer_course.datasets.load_tinytalks`, whose licence asks for
:data:`~transformer_course.datasets.TINYTALKS_ATTRIBUTION` wherever it is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .batching import BucketBatchSampler
from .datasets import TINYTALKS_ATTRIBUTION, TINYTALKS_LEVELS, QAPair, load_tinytalks
from .device import get_device, set_seed
from .generation import generate, greedy_decode
from .gpt import GPT, GPTConfig
from .multihead import use_uniform_attention
from .synthetic import NUM_SPECIAL_TOKENS, make_sequence_task
from .tokenizers import CharTokenizer
from .training import (
    CheckpointError,
    LabelSmoothingLoss,
    describe_checkpoint,
    load_checkpoint_file,
    load_model_state,
    plain,
    save_atomic,
    warmup_cosine_schedule,
)
from .transformer import Transformer, TransformerConfig

__all__ = [
    "PROOF_TIME_BUDGET",
    "ProofConfig",
    "ProofResult",
    "run_proof",
    "proof_verdict",
    "proof_attention",
    "FRAMINGS",
    "DIALOGUE_LINKS",
    "Sample",
    "format_qa",
    "qa_prompt",
    "format_exchange",
    "dialogue_prompt",
    "check_levels",
    "load_pairs",
    "make_samples",
    "build_tokenizer",
    "encode_sample",
    "TinyTalksConfig",
    "TinyTalksModel",
    "TrainingResult",
    "AnswerReport",
    "train_tinytalks",
    "evaluate_loss",
    "evaluate_answers",
    "context_check",
    "track_answers",
    "reply",
    "Chat",
    "load_tinytalks_model",
    "TARGET_LOSS",
    "MAX_REPLY",
    "machine_info",
]

PAD, BOS, EOS = 0, 2, 3  # the ids of <pad>, <s>, </s> in CharTokenizer and synthetic tasks
IGNORE = -100  # target id that F.cross_entropy skips: padding and context positions
# Replies are cut after this many characters: the longest TinyTalks answer has 60, so a longer
# reply is wrong anyway, and an untrained model that never writes a newline stops in time.
MAX_REPLY = 80


# --- stage 1: the attention proof -----------------------------------------------------------

PROOF_TIME_BUDGET = 15.0  # seconds on a 2-core CPU, training and evaluation together


@dataclass
class ProofConfig:
    """The reversal task, the model and its training.

    The defaults are chapter 8's recipe: one encoder and one decoder layer with 2 heads,
    which reaches 100% in about 5 seconds on a 2-core CPU. The TinyTalks milestone's model
    defaults (3 layers, 4 heads) also learn the task, but take three times as long (about
    15 seconds, no margin left in the budget) and their attention maps are less sharp; pass
    ``num_layers=3, num_heads=4`` to run them.
    """

    seq_len: int = 10  # symbols per sequence (all sequences have this length)
    num_symbols: int = 10  # distinct symbols, shown as 0..num_symbols-1
    d_model: int = 64
    num_layers: int = 1  # encoder layers, and as many decoder layers
    num_heads: int = 2
    d_ff: int | None = None  # None: 4 * d_model
    batch_size: int = 64
    epochs: int = 1
    train_size: int = 19_200  # training sequences per epoch: 300 steps of 64 by default
    peak_lr: float = 3e-3
    warmup_steps: int = 30
    held_out: int = 1000  # sequences the accuracy is measured on, never trained on
    eval_every: int = 50  # steps between teacher-forced accuracy measurements (the curve)
    threshold: float = 0.99  # pass: greedy exact-sequence accuracy at least this
    uniform_attention: bool = False  # the ablation: uniform weights in every attention
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("seq_len", "num_symbols", "d_model", "num_layers", "num_heads",
                     "batch_size", "epochs", "train_size", "held_out", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"embed dim {self.d_model} must be divisible by the number of heads "
                f"{self.num_heads}"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + self.num_symbols

    @property
    def steps(self) -> int:
        return self.epochs * math.ceil(self.train_size / self.batch_size)


@dataclass
class ProofResult:
    """What :func:`run_proof` measured; :meth:`summary` is the JSON-ready part.

    ``accuracy`` is the greedy exact-sequence accuracy on the held-out sequences (every symbol
    right), ``symbol_accuracy`` the share of symbols right. ``seconds`` covers everything the
    proof does: making the data and the model, training, and the final evaluation.
    ``history`` holds the training loss of every step (``step``, ``loss``) and the
    teacher-forced held-out accuracy every ``eval_every`` steps (``eval_step``, ``accuracy``).
    """

    config: ProofConfig
    accuracy: float
    symbol_accuracy: float
    passed: bool
    seconds: float
    train_seconds: float
    eval_seconds: float
    steps: int
    parameters: int
    mirror_weight: float  # mean cross-attention weight on source position n - 1 - i
    history: dict
    examples: list[dict]
    model: Transformer = field(repr=False)
    held_out_source: Tensor = field(repr=False)
    held_out_target: Tensor = field(repr=False)

    @property
    def within_budget(self) -> bool:
        return self.seconds <= PROOF_TIME_BUDGET

    def summary(self) -> dict:
        return {
            "passed": self.passed,
            "accuracy": self.accuracy,
            "symbol_accuracy": self.symbol_accuracy,
            "threshold": self.config.threshold,
            "seconds": self.seconds,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "time_budget_seconds": PROOF_TIME_BUDGET,
            "within_budget": self.within_budget,
            "steps": self.steps,
            "parameters": self.parameters,
            "mirror_weight": self.mirror_weight,
            "config": dataclasses.asdict(self.config),
            "history": self.history,
            "examples": self.examples,
        }


def proof_verdict(accuracy: float, threshold: float = 0.99) -> bool:
    """The proof's binary outcome: pass when the held-out accuracy reaches the threshold."""
    return accuracy >= threshold


def _teacher_forcing(target: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, L)`` reversed sequences -> decoder input ``<s> y`` and expected output ``y </s>``,
    both ``(N, L + 1)`` (all sequences have the same length, so no padding is involved)."""
    n = target.shape[0]
    tgt_in = torch.cat([torch.full((n, 1), BOS), target], dim=1)  # (N, L + 1)
    tgt_out = torch.cat([target, torch.full((n, 1), EOS)], dim=1)  # (N, L + 1)
    return tgt_in, tgt_out


def _symbols(ids) -> list[int]:
    """Token ids of symbols -> the symbols 0, 1, 2, ... shown to people."""
    return [int(i) - NUM_SPECIAL_TOKENS for i in ids]


@torch.no_grad()
def _teacher_forced_accuracy(model: Transformer, src: Tensor, tgt_in: Tensor,
                             tgt_out: Tensor) -> float:
    model.eval()
    predictions = model(src, tgt_in).argmax(dim=-1)  # (N, L + 1)
    return (predictions == tgt_out).all(dim=1).float().mean().item()


def run_proof(
    config: ProofConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> ProofResult:
    """Train a Transformer to reverse sequences and measure it on held-out sequences.

    Every step draws a batch of sequences it has not seen before (``train_size`` per epoch);
    the held-out set is drawn with another seed. The final accuracy is measured by greedy
    decoding, the way the model would be used. ``config.uniform_attention`` trains the same
    model with uniform attention weights: the ablation that shows attention is what does it.
    """
    config = config or ProofConfig()
    log = log or (lambda *_: None)
    device = get_device(device)
    # The first optimizer of a process imports part of torch lazily (1-2 s, once): do it now,
    # outside the timed proof, so that the time measures the proof and not Python imports.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    started = time.perf_counter()
    set_seed(config.seed)
    # Two data seeds derived from the run's seed (seed 0 gives chapter 8's data: 1 and 2).
    train_src, train_tgt = make_sequence_task("reverse", config.train_size, config.seq_len,
                                              config.vocab_size, seed=2 * config.seed + 1)
    test_src, test_tgt = make_sequence_task("reverse", config.held_out, config.seq_len,
                                            config.vocab_size, seed=2 * config.seed + 2)
    train_in, train_out = _teacher_forcing(train_tgt)  # (train_size, seq_len + 1) each
    test_in, test_out = _teacher_forcing(test_tgt)  # (held_out, seq_len + 1) each
    train_src, train_in, train_out = (t.to(device) for t in (train_src, train_in, train_out))
    test_src, test_in, test_out = (t.to(device) for t in (test_src, test_in, test_out))

    model_config = TransformerConfig(
        src_vocab_size=config.vocab_size, tgt_vocab_size=config.vocab_size,
        d_model=config.d_model, num_heads=config.num_heads,
        num_encoder_layers=config.num_layers, num_decoder_layers=config.num_layers,
        d_ff=config.d_ff, dropout=0.0, max_len=config.seq_len + 2, pad_id=PAD,
    )
    model = Transformer(model_config).to(device)
    if config.uniform_attention:
        use_uniform_attention(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.peak_lr, betas=(0.9, 0.98))
    steps = config.steps
    warmup = min(config.warmup_steps, steps // 4)
    schedule = warmup_cosine_schedule(warmup, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(config.seed)  # the order of the batches
    history: dict = {"step": [], "loss": [], "eval_step": [], "accuracy": []}
    label = "uniform attention" if config.uniform_attention else "attention"
    log(f"reversal of {config.seq_len} symbols over {config.num_symbols}: "
        f"{model.num_parameters():,} parameters ({label}), {steps} steps of "
        f"{config.batch_size}, {config.held_out} held-out sequences")

    train_start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"reversal ({label})", disable=not progress, leave=False)
    step = 0
    for _epoch in range(config.epochs):
        order = torch.randperm(config.train_size, generator=generator).to(device)
        for start in range(0, config.train_size, config.batch_size):
            rows = order[start : start + config.batch_size]
            model.train()
            logits = model(train_src[rows], train_in[rows])  # (batch, seq_len + 1, vocab)
            loss = F.cross_entropy(logits.flatten(0, 1), train_out[rows].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            history["step"].append(step)
            history["loss"].append(loss.item())
            if step % config.eval_every == 0 or step == steps:
                accuracy = _teacher_forced_accuracy(model, test_src, test_in, test_out)
                history["eval_step"].append(step)
                history["accuracy"].append(accuracy)
                log(f"  step {step:4d}: loss {loss.item():.4f}, held-out accuracy "
                    f"(teacher forcing) {accuracy:.1%}, {time.perf_counter() - train_start:.1f} s")
            bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    outputs = greedy_decode(model, test_src, BOS, EOS, max_len=config.seq_len + 1)
    expected = test_tgt.tolist()
    correct = [out == tgt for out, tgt in zip(outputs, expected, strict=True)]
    symbols_right = sum(sum(a == b for a, b in zip(out, tgt, strict=False))
                        for out, tgt in zip(outputs, expected, strict=True))
    accuracy = sum(correct) / len(correct)
    symbol_accuracy = symbols_right / (len(expected) * config.seq_len)
    result = ProofResult(
        config=config, accuracy=accuracy, symbol_accuracy=symbol_accuracy,
        passed=proof_verdict(accuracy, config.threshold), seconds=0.0,
        train_seconds=train_seconds, eval_seconds=0.0, steps=step,
        parameters=model.num_parameters(), mirror_weight=0.0, history=history,
        examples=[{"source": _symbols(test_src[i].tolist()), "output": _symbols(outputs[i]),
                   "correct": correct[i]} for i in range(min(5, len(outputs)))],
        model=model, held_out_source=test_src, held_out_target=test_tgt,
    )
    result.eval_seconds = time.perf_counter() - eval_start
    result.seconds = time.perf_counter() - started
    # Not part of the timed proof: how much attention lands on the mirrored position.
    result.mirror_weight = float(proof_attention(result, index=None)["mirror_weight"])
    log(f"greedy decoding: {accuracy:.1%} of {len(correct)} held-out sequences exactly "
        f"reversed ({symbol_accuracy:.1%} of symbols); {result.seconds:.1f} s in all "
        f"({train_seconds:.1f} s training, {result.eval_seconds:.2f} s evaluation)")
    return result


@torch.no_grad()
def proof_attention(result: ProofResult, index: int | None = 0) -> dict:
    """Cross-attention of the reversal model, teacher-forced on the true reversal.

    With ``index`` (a held-out sequence), returns its ``source_labels`` and ``output_labels``
    (position: symbol) and ``weights`` ``(layers, heads, seq_len + 1, seq_len)``, whose last
    row predicts ``</s>``. With ``index=None``, ``weights`` is the mean over the held-out set.
    ``mirror_weight`` is the mean weight (last layer, all heads) that output position ``i``
    puts on source position ``n - 1 - i``: near 1 for a model that reverses by attention,
    ``1 / n`` for uniform attention.
    """
    model = result.model
    rows = slice(None) if index is None else slice(index, index + 1)
    src = result.held_out_source[rows]  # (N, seq_len)
    tgt_in, _ = _teacher_forcing(result.held_out_target[rows].cpu())
    model.eval()
    model(src, tgt_in.to(src.device))
    cross = torch.stack(model.attention_weights()["cross"])  # (layers, N, heads, L + 1, L)
    cross = cross.float().cpu().mean(dim=1)  # (layers, heads, L + 1, L)
    n = result.config.seq_len
    mirror = cross[-1][:, torch.arange(n), torch.arange(n - 1, -1, -1)]  # (heads, L)
    maps = {"weights": cross, "mirror_weight": mirror.mean().item()}
    if index is not None:
        source = _symbols(src[0].tolist())
        target = _symbols(result.held_out_target[index].tolist())
        maps["source_labels"] = [f"{j}: {s}" for j, s in enumerate(source)]
        maps["output_labels"] = [f"{i}: {s}" for i, s in enumerate(target)] + [f"{n}: </s>"]
    return maps


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
    cropping :func:`~transformer_course.generation.generate` applies when it answers.
    """
    if len(sample.text) > context_length:
        raise ValueError(
            f"the exchange {sample.text!r} has {len(sample.text)} characters, more than the "
            f"context length {context_length}"
        )
    ids = [BOS] + tokenizer.encode(sample.context + sample.text)
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
    x = torch.full((len(encoded), width), PAD, dtype=torch.long)
    y = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, (inputs, targets) in enumerate(encoded):
        x[row, : len(inputs)] = torch.tensor(inputs)
        y[row, : len(targets)] = torch.tensor(targets)
    return x.to(device), y.to(device)


# --- the model ----------------------------------------------------------------------------------


def _show(character: str) -> str:
    """A label for a heatmap axis: newline and space made visible."""
    return {"\n": "\u23ce", " ": "\u2423"}.get(character, character)


@dataclass
class TinyTalksModel:
    """A character-level GPT with its tokenizer and framing (``"qa"`` or ``"dialogue"``)."""

    model: GPT
    tokenizer: CharTokenizer
    framing: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {self.framing!r}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def newline_id(self) -> int:
        return self.tokenizer.encode("\n")[0]

    def prompt(self, question: str, previous: tuple[str, str] | None = None) -> str:
        """The text the model continues. ``previous`` (question, reply) is used by the
        dialogue framing only; a Q&A model always sees the question alone."""
        if self.framing == "qa":
            return qa_prompt(question)
        return dialogue_prompt(question, previous)

    def unknown_characters(self, text: str) -> list[str]:
        """The characters of ``text`` outside the vocabulary (they become ``<unk>``)."""
        known = set(self.tokenizer.characters)
        return sorted({c for c in text if c not in known})

    def _prompt_ids(self, prompt: str) -> list[int]:
        return [BOS] + self.tokenizer.encode(prompt)

    def _reply_text(self, ids: list[int]) -> str:
        newline = self.newline_id
        ids = ids[: ids.index(newline)] if newline in ids else ids
        return self.tokenizer.decode(ids).strip()

    @torch.no_grad()
    def reply(
        self,
        question: str,
        previous: tuple[str, str] | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        seed: int | None = 0,
        max_new_tokens: int | None = None,
    ) -> str:
        """The model's reply to ``question``: greedy with ``temperature=0``, otherwise sampled
        (with ``top_k``, from a generator seeded with ``seed``). Stops at the newline, or
        after ``max_new_tokens`` characters (default :data:`MAX_REPLY`)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        prompt = torch.tensor([self._prompt_ids(self.prompt(question, previous))],
                              device=self.device)  # (1, prompt_len)
        generator = None
        if temperature > 0 and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        limit = max_new_tokens or MAX_REPLY
        tokens = generate(self.model, prompt, limit, temperature=temperature, top_k=top_k,
                          generator=generator, stop_id=self.newline_id)  # (1, prompt + new)
        return self._reply_text(tokens[0, prompt.shape[1]:].tolist())

    @torch.no_grad()
    def answer_many(self, prompts: Sequence[str], max_new_tokens: int | None = None
                    ) -> list[str]:
        """Greedy replies to many prompts (as made by :meth:`prompt`), batched: prompts of the
        same length in tokens are generated together, so no padding is needed."""
        encoded = [self._prompt_ids(p) for p in prompts]
        limit = max_new_tokens or MAX_REPLY
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            groups.setdefault(len(ids), []).append(i)
        replies: list[str] = [""] * len(prompts)
        for length, members in groups.items():
            batch = torch.tensor([encoded[i] for i in members], device=self.device)  # (n, len)
            tokens = generate(self.model, batch, limit, temperature=0.0,
                              stop_id=self.newline_id)  # (n, len + generated)
            for row, i in enumerate(members):
                replies[i] = self._reply_text(tokens[row, length:].tolist())
        return replies

    @torch.no_grad()
    def attention(self, question: str, reply: str | None = None,
                  previous: tuple[str, str] | None = None) -> dict:
        """Self-attention of every layer and head while reading the prompt and a reply (the
        model's own greedy reply unless one is given).

        Returns ``tokens`` (labels, ``<s>`` first, newline and space made visible), ``text``
        and ``weights`` ``(layers, heads, seq_len, seq_len)``, lower-triangular: row ``t`` is
        where the prediction of character ``t + 1`` looked.
        """
        reply = self.reply(question, previous) if reply is None else reply
        text = f"{self.prompt(question, previous)} {reply}\n"
        ids = self._prompt_ids(text)[-self.model.config.context_length:]
        self.model.eval()
        self.model(torch.tensor([ids], device=self.device))
        weights = torch.stack([w[0] for w in self.model.attention_weights()])
        tokens = ["<s>" if i == BOS else _show(self.tokenizer.decode([i])) for i in ids]
        return {"text": text, "tokens": tokens, "weights": weights.float().cpu()}

    def save(self, path: str | Path, half: bool = True) -> Path:
        """One file with the weights (fp16 by default), the configuration, the characters of
        the vocabulary, the framing and ``info``; written atomically."""
        state = {k: (v.half() if half and v.is_floating_point() else v).cpu()
                 for k, v in self.model.state_dict().items()}
        save_atomic({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "framing": self.framing,
            "config": self.model.config.to_dict(), "model": state,
            "characters": list(self.tokenizer.characters),
            "info": plain(self.info, "the model's info"),  # loads with weights_only=True
        }, path)
        return Path(path)


CHECKPOINT_FORMAT = "transformer_course.tinytalks"
CHECKPOINT_VERSION = 1


def load_tinytalks_model(path: str | Path, device: str | torch.device | None = None
                         ) -> TinyTalksModel:
    """Read a file written by :meth:`TinyTalksModel.save`.

    A missing file is a ``FileNotFoundError`` naming the command that makes one; a file that
    is not a TinyTalks checkpoint (truncated, foreign, of another configuration, or whose
    pickle would run code: it is read with ``weights_only=True``) is a one-line
    :class:`~transformer_course.training.CheckpointError`, a ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no TinyTalks checkpoint at {path}; train one with `transformer-course tinytalks "
            f"dialogue --checkpoint {path}` (or `tinytalks qa`)"
        )
    data = load_checkpoint_file(path, "TinyTalks checkpoint")
    if data.get("format") != CHECKPOINT_FORMAT:
        kind = describe_checkpoint(data)
        raise CheckpointError(f"{path} is not a TinyTalks checkpoint: "
                              + (f"it is {kind}" if kind else
                                 f"it has no {CHECKPOINT_FORMAT!r} format tag"))
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')!r}; this "
                              f"code reads version {CHECKPOINT_VERSION}")
    try:
        model = GPT(GPTConfig.from_dict(data["config"]))
        state = {k: v.float() if isinstance(v, Tensor) and v.is_floating_point() else v
                 for k, v in data["model"].items()}
        tokenizer = CharTokenizer(data["characters"])
        framing = data["framing"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        message = (f"it has no {error.args[0]!r} entry" if isinstance(error, KeyError)
                   else " ".join(str(error).split()))
        raise CheckpointError(f"{path} is a damaged TinyTalks checkpoint: {message}") from error
    load_model_state(model, state, path)
    model.to(get_device(device)).eval()
    return TinyTalksModel(model, tokenizer, framing, data.get("info", {}))


def reply(model: TinyTalksModel, question: str, temperature: float = 0.0,
          top_k: int | None = None, seed: int | None = 0,
          previous: tuple[str, str] | None = None) -> str:
    """The reply of ``model`` to ``question`` (see :meth:`TinyTalksModel.reply`)."""
    return model.reply(question, previous, temperature=temperature, top_k=top_k, seed=seed)


class Chat:
    """A conversation: each reply sees the previous exchange (dialogue framing).

    ``Chat(model).say("I have a dog.")`` returns the reply and remembers the exchange in
    ``history``. With ``temperature > 0`` turn ``n`` is sampled with seed ``seed + n``.
    """

    def __init__(self, model: TinyTalksModel, temperature: float = 0.0,
                 top_k: int | None = None, seed: int = 0):
        self.model = model
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self.history: list[tuple[str, str]] = []

    def say(self, text: str) -> str:
        previous = self.history[-1] if self.history else None
        answer = self.model.reply(text, previous, temperature=self.temperature,
                                  top_k=self.top_k, seed=self.seed + len(self.history))
        self.history.append((text.strip(), answer))
        return answer


# --- training -----------------------------------------------------------------------------------


@dataclass
class TinyTalksConfig:
    """A training run of stage 2 (``framing="qa"``) or 3 (``"dialogue"``).

    The model defaults are the milestone's (embed dim 64, 3 layers, 4 heads, context 128).
    Training stops at the first budget reached: ``epochs`` (passes over the training pairs),
    ``max_steps`` or ``minutes`` (wall-clock, periodic validation included); the learning rate
    warms up for ``warmup_steps`` and then follows a cosine to zero at the budget.
    """

    framing: str = "qa"
    levels: int = 5
    d_model: int = 64
    num_layers: int = 3
    num_heads: int = 4
    context_length: int = 128
    # Light dropout: the milestone asks for the training answers word for word, which takes
    # memorising them; with 0.1, a 3-minute run still gets a third of the level-1 and level-2
    # training answers wrong.
    dropout: float = 0.05
    batch_size: int = 32
    epochs: int | None = None
    max_steps: int | None = None
    minutes: float | None = 3.0
    peak_lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    random_context: float = 0.5  # dialogue: chance of an unrelated previous exchange
    eval_every: int = 150  # steps between validation-loss measurements
    seed: int = 0

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {self.framing!r}")
        check_levels(self.levels)
        if self.epochs is None and self.max_steps is None and self.minutes is None:
            raise ValueError("give a budget: epochs, max_steps or minutes")
        for name in ("epochs", "max_steps", "minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.gpt_config(vocab_size=1)  # the model's own checks: sizes, heads, dropout

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, context_length=self.context_length,
                         d_model=self.d_model, num_heads=self.num_heads,
                         num_layers=self.num_layers, dropout=self.dropout)


@dataclass
class AnswerReport:
    """Exact-answer accuracy: the greedy reply, stripped, must equal the reference.

    ``records`` has one dict per question (``question``, ``context``, ``reference``,
    ``answer``, ``level``, ``correct``); ``per_level`` maps each level to ``correct``,
    ``total`` and ``accuracy``.
    """

    split: str
    records: list[dict]

    @property
    def per_level(self) -> dict[int, dict]:
        levels: dict[int, dict] = {}
        for record in self.records:
            entry = levels.setdefault(record["level"], {"correct": 0, "total": 0})
            entry["correct"] += record["correct"]
            entry["total"] += 1
        for entry in levels.values():
            entry["accuracy"] = entry["correct"] / entry["total"]
        return dict(sorted(levels.items()))

    @property
    def correct(self) -> int:
        return sum(r["correct"] for r in self.records)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.records) if self.records else 0.0

    def table(self) -> str:
        """One line per level, e.g. ``level 1 (greetings and identity): 30/32 (93.8%)``."""
        lines = [f"  level {level} ({TINYTALKS_LEVELS[level]}): {e['correct']}/{e['total']} "
                 f"({e['accuracy']:.1%})" for level, e in self.per_level.items()]
        lines.append(f"  all: {self.correct}/{len(self.records)} ({self.accuracy:.1%})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"split": self.split, "correct": self.correct, "total": len(self.records),
                "accuracy": self.accuracy,
                "per_level": {str(k): v for k, v in self.per_level.items()},
                "records": self.records}


def evaluate_answers(model: TinyTalksModel, samples: Sequence[Sample], split: str = ""
                     ) -> AnswerReport:
    """Greedy replies to the samples' prompts (after their context), compared word for word
    with the reference answers."""
    prompts = [s.context + s.prompt for s in samples]
    answers = model.answer_many(prompts)
    records = [{"question": s.pair.question, "context": s.context, "reference": s.pair.answer,
                "answer": a, "level": s.pair.level, "correct": a == s.pair.answer}
               for s, a in zip(samples, answers, strict=True)]
    return AnswerReport(split, records)


@torch.no_grad()
def evaluate_loss(model: TinyTalksModel, samples: Sequence[Sample], batch_size: int = 64
                  ) -> dict:
    """Mean cross-entropy per scored character (nats), in evaluation mode.

    ``loss`` covers every character of each exchange (prompt and reply; the context is read,
    not scored); ``answer_loss`` only the reply after ``"A:"`` or ``"Bot:"``, given the
    question: the harder, more telling part.
    """
    net = model.model
    net.eval()
    context_length = net.config.context_length
    total = answer_total = 0.0
    count = answer_count = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        encoded = [encode_sample(model.tokenizer, s, context_length) for s in chunk]
        x, y = _collate(encoded, model.device)  # (batch, longest) each
        losses = F.cross_entropy(net(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                                 reduction="none").view_as(y)  # (batch, longest)
        scored = y != IGNORE
        # The reply's targets are the last len(text) - len(prompt) scored positions.
        is_answer = torch.zeros_like(scored)
        for row, sample in enumerate(chunk):
            end = int(scored[row].nonzero().max()) + 1
            is_answer[row, end - (len(sample.text) - len(sample.prompt)) : end] = True
        total += losses[scored].sum().item()
        count += int(scored.sum())
        answer_total += losses[is_answer].sum().item()
        answer_count += int(is_answer.sum())
    return {"loss": total / max(count, 1), "answer_loss": answer_total / max(answer_count, 1),
            "characters": count}


def track_answers(samples: dict[str, Sequence[Sample]],
                  log: Callable[[str], None] | None = None
                  ) -> Callable[[dict, TinyTalksModel], None]:
    """A :func:`train_tinytalks` callback: at each validation, the exact-answer accuracy on
    each named list of samples, stored in the history record as ``exact_<name>``. It shows
    when the model starts to reproduce the training answers, and what that does to the
    validation loss."""

    def callback(record: dict, model: TinyTalksModel) -> None:
        parts = []
        for name, group in samples.items():
            report = evaluate_answers(model, group, name)
            record[f"exact_{name}"] = report.accuracy
            parts.append(f"{name} {report.correct}/{len(group)}")
        if log is not None:
            log(f"      exact answers: {', '.join(parts)}")

    return callback


def context_check(model: TinyTalksModel, samples: Sequence[Sample]) -> dict:
    """Does the dialogue model use the previous exchange? For each sample that has one, the
    reply loss and the greedy reply with it and without it."""
    linked = [s for s in samples if s.context]
    if not linked:
        return {"exchanges": 0}
    alone = [dataclasses.replace(s, context="") for s in linked]
    with_context = evaluate_answers(model, linked)
    without = evaluate_answers(model, alone)
    return {
        "exchanges": len(linked),
        "answer_loss_with_context": evaluate_loss(model, linked)["answer_loss"],
        "answer_loss_without_context": evaluate_loss(model, alone)["answer_loss"],
        "correct_with_context": with_context.correct,
        "correct_without_context": without.correct,
        "examples": [{"previous": s.context, "question": s.pair.question,
                      "reference": s.pair.answer, "with_context": a["answer"],
                      "without_context": b["answer"]}
                     for s, a, b in zip(linked, with_context.records, without.records,
                                        strict=True)],
    }


@dataclass
class TrainingResult:
    """What :func:`train_tinytalks` returns.

    ``history``: one record per validation: ``step``, ``epoch``, ``seconds``, ``lr``,
    ``objective`` (the mean training objective since the previous record: label-smoothed,
    with dropout), and the cross-entropy per character in evaluation mode of the training
    and validation splits, ``train_loss``, ``val_loss``, with ``train_answer_loss`` and
    ``val_answer_loss`` for the replies alone.
    ``seconds``: the training loop's wall-clock time, periodic validation included.
    ``val_loss`` and ``train_loss`` (evaluation mode, at the end) are per character, nats.
    """

    model: TinyTalksModel
    config: TinyTalksConfig
    history: list[dict]
    seconds: float
    steps: int
    epochs: float
    stopped_by: str  # "minutes", "max_steps" or "epochs"
    val_loss: float
    val_answer_loss: float
    train_loss: float  # the training split in evaluation mode, at the end
    train_answer_loss: float
    pairs: dict[str, list[QAPair]] = field(repr=False)

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    def samples(self, split: str) -> list[Sample]:
        """Evaluation samples of a split (deterministic contexts)."""
        return make_samples(self.pairs[split], self.config.framing,
                            context_pairs=self.pairs["train"])

    def summary(self) -> dict:
        return {
            "framing": self.config.framing,
            "config": dataclasses.asdict(self.config),
            "model": self.model.model.config.to_dict(),
            "parameters": self.model.model.num_parameters(),
            "vocabulary": {"size": self.model.tokenizer.vocab_size,
                           "characters": "".join(self.model.tokenizer.characters),
                           "unknown_rule": "characters not in the training text -> <unk> (id 1)"},
            "pairs": {split: len(p) for split, p in self.pairs.items()},
            "steps": self.steps,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "minutes": self.minutes,
            "stopped_by": self.stopped_by,
            "val_loss": self.val_loss,
            "val_answer_loss": self.val_answer_loss,
            "train_loss": self.train_loss,
            "train_answer_loss": self.train_answer_loss,
            "target_loss": TARGET_LOSS[self.config.framing],
            "met_target": self.val_loss < TARGET_LOSS[self.config.framing],
            "history": self.history,
        }


def machine_info(device: torch.device) -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device)}


def train_tinytalks(
    config: TinyTalksConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[dict, TinyTalksModel], None] | None = None,
) -> TrainingResult:
    """Train a character-level GPT on the TinyTalks training split in ``config.framing``.

    Batches of ``batch_size`` samples of similar lengths, reshuffled every epoch (and, for
    dialogue, with fresh random contexts), AdamW with a warm-up and a cosine decay that ends
    at the budget, the gradient norm clipped. The validation loss is measured every
    ``eval_every`` steps and at the end; the returned model is the final one (no selection on
    the validation set).

    ``callback(record, model)`` runs after each validation; it may add entries to the
    history ``record``, e.g. the model's answers to a few questions, to watch it learn. Its
    time is not counted: the clock (``seconds``, the ``minutes`` budget) stops meanwhile.
    """
    config = config or TinyTalksConfig()
    log = log or (lambda *_: None)
    device = get_device(device)
    started = time.perf_counter()
    set_seed(config.seed)
    pairs = load_pairs(config.levels)
    log(f"TinyTalks, levels 1-{config.levels}: {len(pairs['train'])} training, "
        f"{len(pairs['val'])} validation and {len(pairs['test'])} test pairs")
    log(f"  {TINYTALKS_ATTRIBUTION}")
    tokenizer = build_tokenizer(pairs["train"], config.framing)
    model = GPT(config.gpt_config(tokenizer.vocab_size)).to(device)
    tiny = TinyTalksModel(model, tokenizer, config.framing)
    val_samples = make_samples(pairs["val"], config.framing, context_pairs=pairs["train"])
    train_samples = make_samples(pairs["train"], config.framing)  # measured like val_samples

    # Weight decay on the matrices only; biases, LayerNorm gains and embeddings keep theirs.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": other, "weight_decay": 0.0}], lr=config.peak_lr, betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(pairs["train"]) / config.batch_size)
    max_steps = min(s for s in (config.max_steps,
                                config.epochs * steps_per_epoch if config.epochs else None,
                                10**12) if s is not None)
    max_seconds = config.minutes * 60 if config.minutes else None
    log(f"{config.framing}: {model.num_parameters():,} parameters, {tokenizer.vocab_size} "
        f"characters, {steps_per_epoch} steps of {config.batch_size} per epoch; budget "
        + ", ".join(b for b in (f"{config.epochs} epochs" if config.epochs else "",
                                f"{config.max_steps} steps" if config.max_steps else "",
                                f"{config.minutes:g} minutes" if config.minutes else "") if b)
        + f"; device {device}, {torch.get_num_threads()} threads")

    # Label smoothing keeps the model from becoming certain of the characters it memorized:
    # the greedy answers (argmax) are unchanged, but a wrong guess on new text costs less.
    criterion = LabelSmoothingLoss(config.label_smoothing, ignore_index=IGNORE)
    rng = random.Random(config.seed)  # dialogue contexts
    history: list[dict] = []
    step, running, running_count = 0, 0.0, 0
    stopped_by = "max_steps"
    bar = tqdm(total=max_steps if max_steps < 10**12 else None, desc=config.framing,
               disable=not progress, leave=False)
    train_start = time.perf_counter()
    paused = 0.0  # seconds spent in the callback: not training, so off the clock

    def elapsed() -> float:
        return time.perf_counter() - train_start - paused

    def progress_fraction() -> float:
        fractions = [step / max_steps]
        if max_seconds:
            fractions.append(elapsed() / max_seconds)
        return min(1.0, max(fractions))

    def validate() -> None:
        nonlocal running, running_count, paused
        scores = evaluate_loss(tiny, val_samples)
        train_scores = evaluate_loss(tiny, train_samples)
        record = {"step": step, "epoch": step / steps_per_epoch, "seconds": elapsed(),
                  "lr": optimizer.param_groups[0]["lr"],
                  "objective": running / running_count if running_count else None,
                  "train_loss": train_scores["loss"],
                  "train_answer_loss": train_scores["answer_loss"],
                  "val_loss": scores["loss"], "val_answer_loss": scores["answer_loss"]}
        history.append(record)
        running, running_count = 0.0, 0
        if callback is not None:
            callback_start = time.perf_counter()
            callback(record, tiny)
            paused += time.perf_counter() - callback_start
        log(f"  step {step:5d} (epoch {record['epoch']:6.1f}) {record['seconds']:6.1f} s: "
            f"train loss {train_scores['loss']:.3f} (answers {train_scores['answer_loss']:.3f}), "
            f"val loss {scores['loss']:.3f} (answers {scores['answer_loss']:.3f}), "
            f"lr {record['lr']:.2e}")

    warmup = max(1, min(config.warmup_steps, max_steps // 4))
    done, epoch = False, 0
    while not done:
        samples = make_samples(pairs["train"], config.framing, rng=rng,
                               random_context=config.random_context)
        encoded = [encode_sample(tokenizer, s, config.context_length) for s in samples]
        # Batches of similar lengths (shuffled, sorted by length, cut, batches shuffled):
        # TinyTalks pairs run from 20 to 100 characters, and padding every batch to its
        # longest would waste about a third of each step.
        sampler = BucketBatchSampler([len(x) for x, _ in encoded], config.batch_size,
                                     seed=config.seed)
        sampler.set_epoch(epoch)
        epoch += 1
        for indices in sampler:
            # The schedule: linear warm-up over steps, then a cosine over the budget used.
            fraction = progress_fraction()
            if step < warmup:
                multiplier = (step + 1) / warmup
            else:
                multiplier = 0.5 * (1 + math.cos(math.pi * fraction))
            for group in optimizer.param_groups:
                group["lr"] = config.peak_lr * multiplier
            x, y = _collate([encoded[i] for i in indices], device)
            model.train()
            logits = model(x)  # (batch, longest, vocab)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            running += loss.item()
            running_count += 1
            bar.update(1)
            if step % config.eval_every == 0:
                validate()
            out_of_time = max_seconds is not None and elapsed() >= max_seconds
            if step >= max_steps or out_of_time:
                if out_of_time:
                    stopped_by = "minutes"
                elif config.max_steps is None or step < config.max_steps:
                    stopped_by = "epochs"
                done = True
                break
    bar.close()
    seconds = elapsed()
    if not history or history[-1]["step"] != step:
        validate()
    tiny.model.eval()
    final = history[-1]
    tiny.info = {"framing": config.framing, "levels": config.levels, "seed": config.seed,
                 "steps": step, "training_seconds": seconds, "val_loss": final["val_loss"],
                 "val_answer_loss": final["val_answer_loss"]}
    log(f"{config.framing}: {step} steps ({step / steps_per_epoch:.1f} epochs) in "
        f"{seconds / 60:.2f} minutes (stopped by {stopped_by}); final val loss "
        f"{final['val_loss']:.3f} (answers {final['val_answer_loss']:.3f}), train loss "
        f"{final['train_loss']:.3f} (answers {final['train_answer_loss']:.3f}); "
        f"{time.perf_counter() - started:.1f} s in all")
    return TrainingResult(tiny, config, history, seconds, step, step / steps_per_epoch,
                          stopped_by, final["val_loss"], final["val_answer_loss"],
                          final["train_loss"], final["train_answer_loss"], pairs)
