"""Stages 2 and 3 of the TinyTalks capstone: training the GPT for a budget of steps, epochs or
minutes, and the measurements of its answers."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...models.gpt import GPT, GPTConfig
from ...training.losses import LabelSmoothingLoss
from ...training.optimizer import make_optimizer, optimizer_step
from ...training.scheduler import warmup_cosine
from ...utils.batching import BucketBatchSampler
from ...utils.dataset import TINYTALKS_ATTRIBUTION, TINYTALKS_LEVELS, QAPair
from ...utils.device import get_device, set_seed
from .data import (
    FRAMINGS,
    IGNORE,
    TARGET_LOSS,
    Sample,
    _collate,
    build_tokenizer,
    check_levels,
    encode_sample,
    load_pairs,
    make_samples,
)
from .model import TinyTalksModel

__all__ = ["TinyTalksConfig", "TrainingResult", "AnswerReport", "train_tinytalks",
           "evaluate_loss", "evaluate_answers", "context_check", "track_answers", "machine_info"]


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
    optimizer = make_optimizer(model, config.peak_lr, config.weight_decay, betas=(0.9, 0.98))
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
            # The schedule: linear warm-up over steps, then a cosine over the share of the
            # budget used, steps or minutes (so no LambdaLR: its clock counts steps only).
            multiplier = warmup_cosine(step, warmup, progress_fraction())
            for group in optimizer.param_groups:
                group["lr"] = config.peak_lr * multiplier
            x, y = _collate([encoded[i] for i in indices], device)
            model.train()
            logits = model(x)  # (batch, longest, vocab)
            loss = criterion(logits, y)
            optimizer_step(model, loss, optimizer, clip_norm=config.grad_clip)
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
