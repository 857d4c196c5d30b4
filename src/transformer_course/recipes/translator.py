"""The Multi30k German-to-English translator: data preparation, the training recipe, evaluation
and translation (the project of chapters 12-14).

``transformer-course translator train --profile cpu`` runs the recipe end to end: learn a
joint BPE vocabulary on the training split, batch by token budget, train with label smoothing
and a warm-up + cosine schedule, report validation loss and BLEU after every epoch, average
the last checkpoints, and score the test set with beam search and sacreBLEU.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..evaluation.analysis import evaluate_translations
from ..models.generation import beam_search, greedy_decode
from ..models.torch_transformer import TorchTransformer
from ..models.transformer import Transformer, TransformerConfig
from ..training.checkpoint import (
    CheckpointError,
    average_checkpoint_files,
    describe_checkpoint,
    load_checkpoint_file,
    load_model_state,
    plain,
    save_atomic,
)
from ..training.losses import LabelSmoothingLoss
from ..training.optimizer import make_optimizer
from ..training.scheduler import make_scheduler, warmup_cosine_schedule
from ..training.trainer import Trainer
from ..utils.batching import BucketBatchSampler, TranslationDataset, collate_translation
from ..utils.dataset import load_multi30k
from ..utils.device import get_device, set_seed
from ..utils.tokenizer import BPETokenizer

__all__ = [
    "save_cross_attention",
    "TranslatorProfile",
    "PROFILES",
    "Translator",
    "train_translator",
    "load_translator",
    "WATCH_SENTENCES",
    "ARCHITECTURES",
]

# Where a text too long for the model may be split: after sentence-final punctuation (and a
# closing quote or bracket) followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'»“”)])\s+")

# The model classes a recipe can train: the course's from-scratch layers, or PyTorch's
# nn.Transformer around the same embeddings and output layer (chapter 14's comparison).
ARCHITECTURES = {"ours": Transformer, "pytorch": TorchTransformer}

# Sentences translated after every epoch, so the log shows the model learning.
WATCH_SENTENCES = [
    "Ein Mann liest ein Buch.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau in einem roten Kleid geht die Straße entlang.",
]


@dataclass
class TranslatorProfile:
    """Everything that defines a training run, apart from the data and the seed."""

    name: str
    vocab_size: int
    model: dict  # TransformerConfig fields other than the vocabulary sizes
    max_tokens: int  # batch budget: padded tokens per batch
    epochs: int
    peak_lr: float
    warmup_steps: int
    label_smoothing: float = 0.1
    weight_decay: float = 0.0  # AdamW's, on the weight matrices only (make_optimizer)
    grad_clip: float = 1.0
    average_last: int = 1  # average the weights of the last N epochs
    beam_size: int = 4
    length_penalty: float = 0.6
    val_bleu_sentences: int = 1014  # validation sentences translated (greedy) after each epoch
    train_pairs: int | None = None  # use only the first N training pairs (smoke tests)
    max_len: int = 100  # drop training pairs longer than this (in tokens)
    description: str = ""

    def model_config(self, vocab_size: int | None = None, pad_id: int = 0) -> TransformerConfig:
        """The model of this profile: one vocabulary shared by source, target and output
        layer (``vocab_size`` defaults to the profile's), 256 positions."""
        vocab_size = self.vocab_size if vocab_size is None else vocab_size
        return TransformerConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size,
                                 share_embeddings=True, tie_output=True, pad_id=pad_id,
                                 max_len=256, **self.model)


PROFILES: dict[str, TranslatorProfile] = {
    "smoke": TranslatorProfile(
        name="smoke",
        vocab_size=1000,
        model=dict(d_model=64, num_heads=4, num_encoder_layers=1, num_decoder_layers=1,
                   d_ff=128, dropout=0.1),
        max_tokens=2048,
        epochs=2,
        peak_lr=2e-3,
        warmup_steps=20,
        val_bleu_sentences=64,
        train_pairs=2000,
        beam_size=2,
        description="seconds; checks that the pipeline runs end to end (tests, book build)",
    ),
    "cpu": TranslatorProfile(
        name="cpu",
        vocab_size=8000,
        model=dict(d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3,
                   d_ff=1024, dropout=0.1),
        max_tokens=2560,
        epochs=13,
        peak_lr=1e-3,
        warmup_steps=600,
        average_last=4,
        description="a laptop CPU: about 55 minutes of training on 2 cores",
    ),
    "gpu": TranslatorProfile(
        name="gpu",
        vocab_size=10000,
        model=dict(d_model=512, num_heads=8, num_encoder_layers=6, num_decoder_layers=6,
                   d_ff=2048, dropout=0.2),
        max_tokens=8192,
        epochs=40,
        peak_lr=7e-4,
        warmup_steps=1000,
        average_last=5,
        beam_size=5,
        description="one GPU: a larger model trained longer",
    ),
}


@dataclass
class Translator:
    """A trained model with its tokenizer: translate German sentences into English."""

    model: Transformer
    tokenizer: BPETokenizer
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_source_tokens(self) -> int:
        """The longest source the model reads, </s> included (its positional table)."""
        return self.model.config.max_len

    def source_pieces(self, text: str, number: int = 1) -> list[str]:
        """``text`` as pieces the model can read: ``[text]`` when it fits, else its sentences
        (split after ., !, ? or …) when each of them fits.

        Never cuts: an empty text, one that is not valid Unicode, or one with a sentence
        longer than :attr:`max_source_tokens` is a ``ValueError`` naming the problem or the
        limit (``number`` says which text it is in the messages).
        """
        if not text.strip():
            raise ValueError(f"text {number} is empty: give a German sentence to translate")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate: undecodable input bytes
            raise ValueError(f"text {number} is not valid Unicode: character {error.start} is "
                             f"a lone surrogate {text[error.start]!r}") from error
        limit = self.max_source_tokens
        if len(self.tokenizer.encode(text, add_eos=True)) <= limit:
            return [text]
        pieces = [p for p in _SENTENCE_END.split(text.strip()) if p.strip()]
        lengths = [len(self.tokenizer.encode(p, add_eos=True)) for p in pieces]
        if max(lengths) > limit:
            split = " even split into sentences" if len(pieces) > 1 else ""
            raise ValueError(
                f"text {number} is too long for the model{split}: "
                f"{max(lengths)} tokens where it reads at most {limit} (</s> included); "
                "split it into shorter sentences"
            )
        return pieces

    def encode_sources(self, sentences: list[str]) -> torch.Tensor:
        """Padded source ids ``(batch, src_len)``; a sentence longer than the model's limit is
        a ``ValueError`` (never cut: :meth:`translate` splits long texts first)."""
        limit = self.max_source_tokens
        ids = [self.tokenizer.encode(s, add_eos=True) for s in sentences]
        for number, sentence_ids in enumerate(ids, start=1):
            if len(sentence_ids) > limit:
                raise ValueError(
                    f"sentence {number} is {len(sentence_ids)} tokens long; the model reads at "
                    f"most {limit} (</s> included)"
                )
        width = max(len(i) for i in ids)
        src = torch.full((len(ids), width), self.tokenizer.pad_id, dtype=torch.long)
        for row, sentence_ids in enumerate(ids):
            src[row, : len(sentence_ids)] = torch.tensor(sentence_ids)
        return src.to(self.device)

    @torch.no_grad()
    def translate(
        self,
        sentences: list[str] | str,
        beam_size: int = 4,
        length_penalty: float = 0.6,
        batch_size: int = 64,
    ) -> list[str] | str:
        """German text -> English text; ``beam_size=1`` is greedy decoding.

        A text longer than the model's limit is translated sentence by sentence (see
        :meth:`source_pieces`); an empty text, or a sentence still too long, is a
        ``ValueError``.
        """
        use_cache = getattr(self.model, "supports_cache", True)
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id

        def decode(src: Tensor, max_len: int) -> list[list[int]]:
            if beam_size == 1:
                return greedy_decode(self.model, src, bos, eos, max_len, use_cache=use_cache)
            return beam_search(self.model, src, beam_size, bos, eos, max_len,
                               alpha=length_penalty, use_cache=use_cache)

        return self.translate_with(sentences, decode, batch_size)

    def translate_with(
        self,
        sentences: list[str] | str,
        decode: Callable[[Tensor, int], list[list[int]]],
        batch_size: int = 64,
    ) -> list[str] | str:
        """Translate with any decoding function ``decode(src, max_len)``, which turns padded
        source ids ``(batch, src_len)`` into one list of output ids per sentence (without <s>
        and </s>): batching, the output length limit, detokenization and the splitting of
        texts too long for the model are shared by :meth:`translate` and the ONNX translator
        of chapter 17."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not texts:
            return []
        # Texts too long for the model are translated sentence by sentence and joined again.
        pieces = [self.source_pieces(text, number) for number, text in enumerate(texts, 1)]
        sentences = [piece for text_pieces in pieces for piece in text_pieces]
        # Sort by length so batches hold similar lengths; restore the order at the end.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        outputs: dict[int, str] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src = self.encode_sources([sentences[i] for i in chunk])
            max_len = min(int(src.shape[1] * 1.5) + 10, self.model.config.max_len - 1)
            for i, token_ids in zip(chunk, decode(src, max_len), strict=True):
                outputs[i] = self.tokenizer.decode(token_ids)
        translations, start = [], 0
        for text_pieces in pieces:
            translations.append(" ".join(outputs[i]
                                         for i in range(start, start + len(text_pieces))))
            start += len(text_pieces)
        return translations[0] if single else translations

    @torch.no_grad()
    def cross_attention(self, sentence: str, beam_size: int = 4) -> dict:
        """Translate one sentence; return its source and output tokens with the cross-attention
        weights of every layer, ``(layers, heads, out_len + 1, src_len)`` (the last row is
        the prediction of </s>)."""
        translation = self.translate(sentence, beam_size=beam_size)
        src = self.encode_sources([sentence])
        tgt = self.tokenizer.encode(translation)
        tgt_in = torch.tensor([[self.tokenizer.bos_id] + tgt], device=self.device)
        self.model.eval()
        self.model(src, tgt_in)
        weights = torch.stack([w[0] for w in self.model.attention_weights()["cross"]])
        return {
            "translation": translation,
            "source_tokens": self.tokenizer.tokenize(sentence) + ["</s>"],
            # Row i of the weights is the decoder position that predicts output token i.
            "output_tokens": [self.tokenizer.id_to_token(i) for i in tgt] + ["</s>"],
            "weights": weights.float().cpu(),  # (layers, heads, out_len + 1, src_len)
        }

    def save(self, path: str | Path, half: bool = True) -> Path:
        """Model weights (fp16 by default), configuration and tokenizer in one file, of
        tensors and plain values only (it loads with ``weights_only=True``)."""
        state = {k: (v.half() if half and v.is_floating_point() else v)
                 for k, v in self.model.state_dict().items()}
        tokenizer_path = Path(path).with_suffix(".tokenizer.json")
        self.tokenizer.save(tokenizer_path)
        architecture = next(k for k, v in ARCHITECTURES.items() if type(self.model) is v)
        save_atomic({"config": self.model.config.to_dict(), "architecture": architecture,
                     "model": state,
                     "tokenizer": tokenizer_path.read_text(encoding="utf-8"),
                     "info": plain(self.info, "the translator's info")}, path)
        tokenizer_path.unlink()
        return Path(path)


TRANSLATOR_CHECKPOINT = "translator checkpoint"


def load_translator(path: str | Path, device: str | torch.device | None = None) -> Translator:
    """Load a file written by :meth:`Translator.save`.

    It is read with ``weights_only=True``: only tensors and plain values are unpickled, so a
    file whose pickle would run code is refused without running it. A missing file is a
    ``FileNotFoundError``; anything else that is not a translator checkpoint (a text file, a
    truncated file, another kind of checkpoint, another configuration, a missing entry) is a
    :class:`~transformer_course.training.checkpoint.CheckpointError` (a ``ValueError``) of one line
    naming the file and what was expected.
    """
    import tempfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no translator checkpoint at {path}; train one with "
            "`transformer-course translator train --profile cpu`"
        )
    data = load_checkpoint_file(path, TRANSLATOR_CHECKPOINT)
    expected = "(config, model and tokenizer, as written by Translator.save)"
    missing = [key for key in ("config", "model", "tokenizer") if key not in data]
    if missing:
        kind = describe_checkpoint(data)
        raise CheckpointError(
            f"{path} is not a {TRANSLATOR_CHECKPOINT}: "
            + (f"it is {kind}" if kind else f"it has no {missing[0]!r} entry")
            + f"; expected a translator model {expected}"
        )
    architecture = data.get("architecture", "ours")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{path} has an unknown architecture {architecture!r}; this code "
                              f"knows {sorted(ARCHITECTURES)}")
    try:
        config = TransformerConfig.from_dict(data["config"])
        model = ARCHITECTURES[architecture](config)
    except (TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path} has an invalid model configuration: {error}") from error
    state = data["model"]
    if isinstance(state, dict):
        state = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                 for k, v in state.items()}
    load_model_state(model, state, path)
    if not isinstance(data["tokenizer"], str):
        raise CheckpointError(f"{path}: its 'tokenizer' entry is not the tokenizer's JSON text")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_file = Path(tmp) / "tokenizer.json"
        tokenizer_file.write_text(data["tokenizer"], encoding="utf-8")
        try:
            tokenizer = BPETokenizer.load(tokenizer_file)
        except ValueError as error:
            message = " ".join(str(error).replace(str(tokenizer_file), "").split())
            raise CheckpointError(f"{path} has a damaged tokenizer: {message}") from error
    if tokenizer.vocab_size != config.src_vocab_size:
        raise CheckpointError(
            f"{path}: its tokenizer has {tokenizer.vocab_size} tokens but its model "
            f"{config.src_vocab_size}; the two do not belong together"
        )
    model.to(get_device(device)).eval()
    info = data.get("info", {})
    return Translator(model, tokenizer, info if isinstance(info, dict) else {})


# --- training ---------------------------------------------------------------------------------


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train_translator(
    profile: TranslatorProfile | str,
    output_dir: str | Path,
    seed: int = 0,
    device: str | torch.device | None = None,
    resume: bool = False,
    epochs: int | None = None,
    log=print,
    progress: bool = True,
    architecture: str = "ours",
) -> dict:
    """Run the recipe of ``profile``; write the run's files to ``output_dir``.

    ``architecture`` picks the model class (see :data:`ARCHITECTURES`); everything else
    (data, vocabulary, batches, optimizer, schedule, epochs, evaluation) is the profile's.

    Files: ``tokenizer.json``, ``latest.pt`` (resumable trainer checkpoint), ``epoch_N.pt``
    (weights of the last epochs, for averaging), ``history.json`` (one record per epoch),
    ``model.pt`` (the final, averaged model in fp16) and ``summary.json``. Returns the summary.
    """
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of "
                         f"{sorted(ARCHITECTURES)}")
    epochs = profile.epochs if epochs is None else epochs
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = get_device(device)
    set_seed(seed)
    started = time.perf_counter()

    train_pairs = load_multi30k("train")[: profile.train_pairs]
    val_pairs = load_multi30k("val")
    tokenizer_path = output_dir / "tokenizer.json"
    if resume and tokenizer_path.exists():
        tokenizer = BPETokenizer.load(tokenizer_path)
    else:
        # The vocabulary is learned from the training split only.
        tokenizer = BPETokenizer.train([s for pair in train_pairs for s in pair],
                                       profile.vocab_size)
        tokenizer.save(tokenizer_path)
    log(f"tokenizer: {tokenizer.vocab_size} tokens ({time.perf_counter() - started:.1f} s)")

    train_data = TranslationDataset(train_pairs, tokenizer.encode, tokenizer.encode,
                                    profile.max_len)
    val_data = TranslationDataset(val_pairs, tokenizer.encode, tokenizer.encode)
    sampler = BucketBatchSampler(train_data.lengths(), max_tokens=profile.max_tokens, seed=seed)
    val_batches = [
        collate_translation([val_data[i] for i in b]).to(device)
        for b in BucketBatchSampler(val_data.lengths(), max_tokens=4096, shuffle=False)
    ]

    def make_batches(epoch: int):
        sampler.set_epoch(epoch)
        return [collate_translation([train_data[i] for i in b]) for b in sampler]

    config = profile.model_config(tokenizer.vocab_size, tokenizer.pad_id)
    model = ARCHITECTURES[architecture](config).to(device)
    # The paper's Adam settings; weight decay (none in the profiles) on the matrices only.
    optimizer = make_optimizer(model, profile.peak_lr, profile.weight_decay, betas=(0.9, 0.98),
                               eps=1e-9)
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * epochs
    # The cosine reaches zero at the last step of the last epoch; a resumed run must use the
    # same number of epochs to follow the same schedule.
    warmup = min(profile.warmup_steps, total_steps // 4)
    scheduler = make_scheduler(optimizer, warmup_cosine_schedule(warmup, total_steps))
    criterion = LabelSmoothingLoss(profile.label_smoothing, ignore_index=tokenizer.pad_id)

    def compute_loss(model, batch):
        batch = batch.to(device)
        logits = model(batch.src, batch.tgt_in)  # (batch, tgt_len, vocab)
        return criterion(logits, batch.tgt_out), batch.num_target_tokens

    translator = Translator(model, tokenizer)
    val_sources = [de for de, _ in val_pairs[: profile.val_bleu_sentences]]
    val_references = [en for _, en in val_pairs[: profile.val_bleu_sentences]]

    def validate(trainer: Trainer) -> dict:
        start = time.perf_counter()
        result = {"val_loss": trainer.evaluate(val_batches)}
        hypotheses = translator.translate(val_sources, beam_size=1)
        result["val_bleu_greedy"] = evaluate_translations(hypotheses, val_references).sacrebleu_bleu
        result["watch"] = dict(zip(WATCH_SENTENCES, translator.translate(WATCH_SENTENCES, 1),
                                   strict=True))
        epoch = trainer.state.epoch + 1
        snapshot = output_dir / f"epoch_{epoch}.pt"
        save_atomic(model.state_dict(), snapshot)  # a kill mid-write leaves no bad snapshot
        old = output_dir / f"epoch_{epoch - profile.average_last}.pt"
        old.unlink(missing_ok=True)
        result["validation_seconds"] = time.perf_counter() - start
        train_loss = trainer.state.epoch_loss_sum / max(1, trainer.state.epoch_tokens)
        log(f"epoch {epoch}: train loss {train_loss:.3f}, val loss {result['val_loss']:.3f}, "
            f"val BLEU (greedy) {result['val_bleu_greedy']:.2f}"
            f", {trainer.state.epoch_seconds:.0f} s training; "
            f"'{WATCH_SENTENCES[0]}' -> '{result['watch'][WATCH_SENTENCES[0]]}'")
        return result

    trainer = Trainer(model, optimizer, compute_loss, scheduler, grad_clip=profile.grad_clip,
                      device=device, checkpoint_path=output_dir / "latest.pt",
                      history_path=output_dir / "history.json", progress=progress)
    trainer.extra_state = {"profile": dataclasses.asdict(profile), "seed": seed,
                           "architecture": architecture}
    if resume and (output_dir / "latest.pt").exists():
        trainer.load_checkpoint(output_dir / "latest.pt")
        log(f"resumed at epoch {trainer.state.epoch + 1}, step {trainer.state.step}")
    log(f"model: {model.num_parameters():,} parameters; {steps_per_epoch} batches per epoch; "
        f"device {device}; torch threads {torch.get_num_threads()}")
    history = trainer.fit(make_batches, epochs, validate=validate)

    training_seconds = sum(h["epoch_seconds"] for h in history)
    last = sorted(output_dir.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    last = last[-profile.average_last:]
    model.load_state_dict(average_checkpoint_files(last))
    translator.info = {
        "profile": profile.name, "architecture": architecture, "seed": seed,
        "epochs": len(history),
        "averaged_epochs": [int(p.stem.split("_")[1]) for p in last],
        "training_seconds": training_seconds, "git_commit": _git_commit(),
    }
    summary = {
        **translator.info,
        "profile": dataclasses.asdict(profile),
        "command": f"transformer-course translator train --profile {profile.name} --seed {seed}"
                   + ("" if architecture == "ours" else f" --architecture {architecture}"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(device)},
        "git_commit": translator.info["git_commit"],
        "parameters": model.num_parameters(),
        "training_minutes": training_seconds / 60,
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    summary["evaluation"] = evaluate_translator(translator, "test_2016_flickr",
                                                profile.beam_size, profile.length_penalty, log)
    translator.save(output_dir / "model.pt")
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def evaluate_translator(
    translator: Translator,
    split: str = "test_2016_flickr",
    beam_size: int = 4,
    length_penalty: float = 0.6,
    log=print,
    limit: int | None = None,
) -> dict:
    """sacreBLEU (cased, detokenized, with its signature) of beam search and greedy decoding."""
    pairs = load_multi30k(split)[:limit]
    sources = [de for de, _ in pairs]
    references = [en for _, en in pairs]
    results = {}
    for name, beam in (("beam", beam_size), ("greedy", 1)):
        start = time.perf_counter()
        hypotheses = translator.translate(sources, beam_size=beam, length_penalty=length_penalty)
        report = evaluate_translations(hypotheses, references)
        results[name] = {
            "beam_size": beam, "bleu": report.sacrebleu_bleu,
            "signature": report.sacrebleu_bleu_signature, "chrf": report.sacrebleu_chrf,
            "seconds": time.perf_counter() - start, "examples": hypotheses[:5],
        }
        log(f"{split} {name} (beam {beam}): BLEU {report.sacrebleu_bleu:.2f} "
            f"[{report.sacrebleu_bleu_signature}], chrF {report.sacrebleu_chrf:.2f}")
    return {"split": split, "sentences": len(pairs), **results}


def save_cross_attention(translator: Translator, sentence: str, path: str | Path,
                         beam: int = 4) -> None:
    """A figure of the last layer's cross-attention (mean over heads) for ``sentence``, saved
    to ``path``: rows are output tokens, columns German source tokens."""
    import matplotlib

    matplotlib.use("Agg")
    from ..utils.visualization import plot_attention

    maps = translator.cross_attention(sentence, beam_size=beam)
    weights = maps["weights"][-1].mean(0)  # last layer, averaged over heads
    ax = plot_attention(weights, maps["output_tokens"], maps["source_tokens"],
                        title=f"cross-attention (last layer): {maps['translation']}")
    ax.set_xlabel("German source token")
    ax.set_ylabel("English output token")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
