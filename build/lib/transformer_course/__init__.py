"""transformer_course: the shared package of the course "Transformers from Scratch".

Each module holds one idea and names the chapter that introduces it. Chapters build an idea
step by step in the notebook, then check their version against the one here.
"""

from .attention import (
    from_pytorch_mask,
    make_causal_mask,
    make_padding_mask,
    scaled_dot_product_attention,
    to_additive_mask,
    to_pytorch_mask,
)
from .decoder import DecoderLayer, TransformerDecoder
from .device import get_device, set_seed
from .embeddings import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_encoding,
)
from .encoder import EncoderLayer, TransformerEncoder
from .feedforward import PositionwiseFeedForward
from .gpt import GPT, GPTConfig
from .multihead import KVCache, MultiHeadAttention
from .normalization import LayerNorm, ResidualConnection
from .tokenizers import BPETokenizer, CharTokenizer
from .transformer import Transformer, TransformerConfig

__version__ = "0.1.0"

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "DecoderLayer",
    "EncoderLayer",
    "GPT",
    "GPTConfig",
    "KVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "PositionwiseFeedForward",
    "ResidualConnection",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "Transformer",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerEncoder",
    "from_pytorch_mask",
    "get_device",
    "make_causal_mask",
    "make_padding_mask",
    "scaled_dot_product_attention",
    "set_seed",
    "sinusoidal_encoding",
    "to_additive_mask",
    "to_pytorch_mask",
]
