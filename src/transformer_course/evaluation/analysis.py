"""A translation result as it should be reported: the from-scratch scores next to sacreBLEU's,
with its signatures (chapters 11 and 14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .bleu import BLEUResult, corpus_bleu
from .chrf import CHRFResult, corpus_chrf
from .corpus import _check_hypotheses, _reference_streams
from .meteor import corpus_meteor

__all__ = ["TranslationEvaluation", "evaluate_translations"]


# --- Reporting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslationEvaluation:
    """sacreBLEU's BLEU and chrF with their signatures, next to this module's own metrics.

    Report ``sacrebleu_bleu`` together with ``sacrebleu_bleu_signature``: the signature says how
    the number was computed (number of references, case, tokenizer, smoothing, version), which
    is what makes BLEU scores comparable between papers.
    """

    sacrebleu_bleu: float
    sacrebleu_bleu_signature: str
    sacrebleu_chrf: float
    sacrebleu_chrf_signature: str
    bleu: BLEUResult
    chrf: CHRFResult
    meteor: float
    num_sentences: int
    num_references: int

    def as_dict(self) -> dict:
        """The scores and signatures as a flat dictionary (for logging or JSON)."""
        return {
            "sacrebleu_bleu": self.sacrebleu_bleu,
            "sacrebleu_bleu_signature": self.sacrebleu_bleu_signature,
            "sacrebleu_chrf": self.sacrebleu_chrf,
            "sacrebleu_chrf_signature": self.sacrebleu_chrf_signature,
            "bleu": self.bleu.score,
            "bleu_precisions": list(self.bleu.precisions),
            "bleu_brevity_penalty": self.bleu.brevity_penalty,
            "chrf": self.chrf.score,
            "meteor": self.meteor,
            "num_sentences": self.num_sentences,
            "num_references": self.num_references,
        }

    def format_report(self) -> str:
        """A small table: one metric per row, with its signature or its details."""
        precisions = "/".join(f"{p:.1f}" for p in self.bleu.precisions)
        rows = [
            ("sacreBLEU", self.sacrebleu_bleu, self.sacrebleu_bleu_signature),
            ("BLEU (from scratch)", self.bleu.score,
             f"{precisions} BP={self.bleu.brevity_penalty:.3f} ratio={self.bleu.ratio:.3f}"),
            (f"sacreBLEU {self.chrf.name}", self.sacrebleu_chrf, self.sacrebleu_chrf_signature),
            (f"{self.chrf.name} (from scratch)", self.chrf.score,
             f"P={self.chrf.precision:.1f} R={self.chrf.recall:.1f}"),
            ("METEOR x100 (simplified)", 100 * self.meteor,
             "exact + stem matches only: not comparable with official METEOR"),
        ]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'metric':<{width}}  {'score':>6}  signature / details"]
        lines += [f"{name:<{width}}  {score:6.2f}  {notes}" for name, score, notes in rows]
        lines.append(f"{self.num_sentences} sentences, {self.num_references} reference(s) each")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_report()


def evaluate_translations(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    lowercase: bool = False,
    tokenize: str = "13a",
) -> TranslationEvaluation:
    """Score detokenized translations with sacreBLEU (BLEU, chrF) and this module's metrics.

    The defaults are the standard report: cased BLEU on detokenized text with the 13a tokenizer,
    whose signature reads ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``. Feed
    plain detokenized sentences, not subword pieces or space-separated tokens: sacreBLEU
    tokenizes itself (and logs a warning when many hypotheses end in " .", a sign of
    tokenized output). ``references`` follows the module's layout.
    """
    # sacreBLEU is imported here only: the from-scratch metrics above do not use it.
    from sacrebleu.metrics import BLEU, CHRF

    hypotheses = _check_hypotheses(hypotheses)
    streams = _reference_streams(references, len(hypotheses))

    sacre_bleu = BLEU(lowercase=lowercase, tokenize=tokenize)
    sacre_bleu_score = sacre_bleu.corpus_score(hypotheses, streams)
    sacre_chrf = CHRF(lowercase=lowercase)
    sacre_chrf_score = sacre_chrf.corpus_score(hypotheses, streams)

    return TranslationEvaluation(
        sacrebleu_bleu=sacre_bleu_score.score,
        sacrebleu_bleu_signature=str(sacre_bleu.get_signature()),
        sacrebleu_chrf=sacre_chrf_score.score,
        sacrebleu_chrf_signature=str(sacre_chrf.get_signature()),
        bleu=corpus_bleu(hypotheses, streams, lowercase=lowercase, tokenize=tokenize),
        chrf=corpus_chrf(hypotheses, streams, lowercase=lowercase),
        meteor=corpus_meteor(hypotheses, streams),
        num_sentences=len(hypotheses),
        num_references=len(streams),
    )
