"""The TinyTalks GPT with its tokenizer: replies, attention, saving and loading, chat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ...models.generation import generate
from ...models.gpt import GPT, GPTConfig
from ...training.checkpoint import (
    CheckpointError,
    describe_checkpoint,
    load_checkpoint_file,
    load_model_state,
    plain,
    save_atomic,
)
from ...utils.device import get_device
from ...utils.tokenizer import BOS_ID, CharTokenizer
from .data import FRAMINGS, dialogue_prompt, qa_prompt

__all__ = ["TinyTalksModel", "reply", "Chat", "load_tinytalks_model", "MAX_REPLY"]
# Replies are cut after this many characters: the longest TinyTalks answer has 60, so a longer
# reply is wrong anyway, and an untrained model that never writes a newline stops in time.
MAX_REPLY = 80


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
        return [BOS_ID] + self.tokenizer.encode(prompt)

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
        tokens = ["<s>" if i == BOS_ID else _show(self.tokenizer.decode([i])) for i in ids]
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


CHECKPOINT_FORMAT = "transformer_course.tinytalks"  # the tag of the files, not a module path
CHECKPOINT_VERSION = 1


def load_tinytalks_model(path: str | Path, device: str | torch.device | None = None
                         ) -> TinyTalksModel:
    """Read a file written by :meth:`TinyTalksModel.save`.

    A missing file is a ``FileNotFoundError`` naming the command that makes one; a file that
    is not a TinyTalks checkpoint (truncated, foreign, of another configuration, or whose
    pickle would run code: it is read with ``weights_only=True``) is a one-line
    :class:`~transformer_course.training.checkpoint.CheckpointError`, a ``ValueError``.
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
