"""Utilities: tokenizer (characters, BPE; chapter 5), dataset (Multi30k, TinyTalks; chapter 12),
synthetic (copy and reverse tasks), batching (dynamic padding, length buckets; chapter 12),
visualization (attention maps and curves), device (device choice and seeds).

Import from the module that holds the idea: ``from transformer_course.utils.tokenizer import
BPETokenizer``.
"""
