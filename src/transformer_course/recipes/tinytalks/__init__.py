"""The TinyTalks GPT capstone: the attention proof, Q&A generation and dialogue.

Three stages, each a function returning its numbers and histories, and a command of
``transformer-course tinytalks`` (the flags mirror the TinyTalks "milestone" scripts):

1. **Attention proof** (:func:`run_proof`): a small encoder-decoder Transformer learns to
   reverse sequences of symbols, ``1 2 3 4 -> 4 3 2 1``. Output position ``i`` must read input
   position ``n - 1 - i`` whatever the symbols are, which only works if attention addresses
   the source by position; the same model with uniform attention weights
   (:func:`~transformer_course.models.multihead.use_uniform_attention`) cannot learn it.
2. **Q&A** (``framing="qa"``): a character-level GPT trained on TinyTalks pairs written as
   ``"Q: question
A: answer
"``, prompted with ``"Q: question
A:"``.
3. **Dialogue** (``framing="dialogue"``): the same pairs as turns of a conversation,
   ``"User: ...
Bot: ...
"``, where the context carries the previous exchange.

:func:`train_tinytalks` trains stages 2 and 3 for a budget of steps, epochs or minutes;
:class:`TinyTalksModel` answers (:meth:`~TinyTalksModel.reply`), shows its attention
(:meth:`~TinyTalksModel.attention`) and saves itself; :func:`load_tinytalks_model` reads a
checkpoint back.

Data: :func:`~transformer_course.utils.dataset.load_tinytalks`, whose licence asks for
:data:`~transformer_course.utils.dataset.TINYTALKS_ATTRIBUTION` wherever it is used.
"""

from .data import (
    DIALOGUE_LINKS,
    FRAMINGS,
    TARGET_LOSS,
    Sample,
    build_tokenizer,
    check_levels,
    dialogue_prompt,
    encode_sample,
    format_exchange,
    format_qa,
    load_pairs,
    make_samples,
    qa_prompt,
)
from .model import (
    MAX_REPLY,
    Chat,
    TinyTalksModel,
    load_tinytalks_model,
    reply,
)
from .proof import (
    PROOF_TIME_BUDGET,
    ProofConfig,
    ProofResult,
    proof_attention,
    proof_verdict,
    run_proof,
)
from .training import (
    AnswerReport,
    TinyTalksConfig,
    TrainingResult,
    context_check,
    evaluate_answers,
    evaluate_loss,
    machine_info,
    track_answers,
    train_tinytalks,
)

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
    "TARGET_LOSS",
    "TinyTalksModel",
    "reply",
    "Chat",
    "load_tinytalks_model",
    "MAX_REPLY",
    "TinyTalksConfig",
    "TrainingResult",
    "AnswerReport",
    "train_tinytalks",
    "evaluate_loss",
    "evaluate_answers",
    "context_check",
    "track_answers",
    "machine_info",
]
