"""transformer_course: the shared package of the course "Transformers from Scratch".

Its learner-facing part is the project the course has the learner build, one file per idea:

- ``models/``: attention, multi-head attention, embeddings, feed-forward, normalization,
  encoder, decoder, the encoder-decoder Transformer, the GPT, generation, and the Part 6
  variants next to what they vary;
- ``training/``: losses, schedules, checkpoints and the trainer;
- ``evaluation/``: BLEU, chrF, METEOR and the analysis of a translation result;
- ``utils/``: tokenizers, data sets, batching, visualization, device and seeds.

The course's machinery sits apart: ``recipes/`` (the capstones and experiments), ``serving/``
(deployment and the HTTP service), ``grading/``, ``notebook`` (helpers of the chapters) and
``cli/`` (the ``transformer-course`` command). Chapters import each name from the module that
holds it; the few below are the package's face.
"""

from .models.gpt import GPT, GPTConfig
from .models.transformer import Transformer, TransformerConfig
from .utils.device import get_device, set_seed
from .utils.tokenizer import BPETokenizer, CharTokenizer

__version__ = "0.1.0"

__all__ = ["BPETokenizer", "CharTokenizer", "GPT", "GPTConfig", "Transformer",
           "TransformerConfig", "get_device", "set_seed", "__version__"]
