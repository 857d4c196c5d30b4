"""The input layout every corpus-level metric shares (sacreBLEU's), and its 13a tokenizer
(chapter 11)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = ["tokenize_13a", "tokenize_text"]


# --- Input checks -------------------------------------------------------------------------------


def _check_hypotheses(hypotheses: Sequence[str]) -> list[str]:
    if isinstance(hypotheses, str):
        raise ValueError(
            "hypotheses must be a list of strings (one per sentence), got a single string; "
            "wrap one sentence as [sentence] or use the sentence_* functions"
        )
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("hypotheses is empty; expected at least one sentence to score")
    for i, line in enumerate(hypotheses):
        if not isinstance(line, str):
            raise ValueError(f"hypotheses[{i}] must be a string, got {type(line).__name__}")
    return hypotheses


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]], n_hyps: int):
    """Validate ``references`` (see the module docstring) and return it as a list of streams."""
    if isinstance(references, str):
        raise ValueError(
            "references must be a list of strings or a list of reference streams, "
            "got a single string"
        )
    references = list(references)
    if not references:
        raise ValueError("references is empty; expected at least one reference per hypothesis")
    if all(isinstance(r, str) for r in references):
        streams = [references]  # the single-reference shortcut: list[str]
    elif all(isinstance(r, Sequence) and not isinstance(r, str) for r in references):
        streams = [list(stream) for stream in references]
    else:
        raise ValueError(
            "references must be either a list of strings (one reference per hypothesis) or a "
            "list of reference streams (lists of strings), not a mixture"
        )
    for k, stream in enumerate(streams):
        if len(stream) != n_hyps:
            raise ValueError(
                f"reference stream {k} has {len(stream)} sentences but there are {n_hyps} "
                "hypotheses; each stream must hold one reference per hypothesis (sacreBLEU's "
                "layout). To convert a list of references per sentence, transpose it: "
                "[list(s) for s in zip(*per_sentence)]"
            )
        for i, line in enumerate(stream):
            if not isinstance(line, str):
                raise ValueError(
                    f"reference stream {k}, sentence {i} must be a string, "
                    f"got {type(line).__name__}"
                )
    return streams


def _corpus(hypotheses, references) -> tuple[list[str], list[tuple[str, ...]]]:
    """The hypotheses and, for each of them, the tuple of its references."""
    hypotheses = _check_hypotheses(hypotheses)
    streams = _reference_streams(references, len(hypotheses))
    return hypotheses, list(zip(*streams, strict=True))


def _sentence_references(references: str | Sequence[str]) -> list[str]:
    """The references of one sentence: a string, or a non-empty list of strings."""
    if isinstance(references, str):
        return [references]
    references = list(references)
    if not references:
        raise ValueError("references is empty; expected at least one reference string")
    for i, line in enumerate(references):
        if not isinstance(line, str):
            raise ValueError(
                f"references[{i}] must be a string, got {type(line).__name__} (the sentence_* "
                "functions take the references of one sentence: a string or a list of strings)"
            )
    return references


# --- Tokenization -------------------------------------------------------------------------------

# The 13a tokenizer of mteval-v13a.pl, the WMT standard and sacreBLEU's default. It splits off
# every ASCII punctuation mark except four that depend on their neighbours: the apostrophe
# ("don't" stays whole), the hyphen ("T-shirt" stays whole), and the period and comma, which
# stay inside numbers ("3.5", "1,000") but are split off everywhere else.
_ALWAYS_SPLIT = "".join(c for c in string.punctuation if c not in "'-.,")
_13A_RULES = [
    (re.compile(f"([{re.escape(_ALWAYS_SPLIT)}])"), r" \1 "),
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),  # period or comma not after a digit
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),  # period or comma not before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a hyphen after a digit: "2-1" -> "2 - 1"
]
_HTML_ENTITIES = [("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")]


def tokenize_13a(text: str) -> str:
    """Tokenize like sacreBLEU's default ``13a`` tokenizer; returns tokens joined by spaces.

    Steps: drop ``<skipped>`` markers, join words hyphenated across a line break, unescape the
    four HTML entities mteval knows (``&amp;`` -> ``&`` ...), pad with a space on each side (so
    that a period at the very start or end has a non-digit neighbour), apply the four
    :data:`_13A_RULES` in order, and collapse runs of whitespace.

    >>> tokenize_13a('He said: "3,000.50 dollars," (roughly).')
    'He said : " 3,000.50 dollars , " ( roughly ) .'
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _HTML_ENTITIES:  # in this order: "&amp;lt;" ends as "<"
        text = text.replace(entity, character)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def tokenize_text(text: str, tokenize: str = "13a", lowercase: bool = False) -> list[str]:
    """The word tokens BLEU counts, exactly as sacreBLEU prepares a line.

    Lowercase (when asked), strip trailing whitespace, tokenize (``"13a"``, or ``"none"`` for
    text that is already tokenized), then split on whitespace.
    """
    if tokenize not in ("13a", "none"):
        raise ValueError(f"tokenize must be '13a' or 'none', got {tokenize!r}")
    if lowercase:
        text = text.lower()
    text = text.rstrip()
    if tokenize == "13a":
        text = tokenize_13a(text)
    return text.split()
