"""The models the learner builds, one idea per file, in the order of the chapters.

attention (2), multihead (3, KV cache 9 and 17), embeddings (4), feedforward and normalization
(6), encoder (7), decoder (8), generation (9), transformer (13), gpt (16 and the TinyTalks
capstone); the Part 6 variants sit next to what they vary: relative_positions (15) next to
embeddings (its schemes plug into multihead's one attention, chosen by name in the gpt and
transformer configs), sparse_attention (15) and flash_attention (16) next to attention, moe
(15) next to feedforward, bert and vit (16) next to transformer, torch_transformer (14) the
same model with PyTorch's layers, interop the weight copies for the parity checks.

Import from the module that holds the idea: ``from transformer_course.models.attention import
scaled_dot_product_attention``.
"""
