"""Training: losses (label smoothing), optimizer (weight-decay groups, AdamW, one optimizer
step), scheduler (warm-up schedules), checkpoint (atomic saves, weights-only loads) and trainer
(the loop, mixed precision, resume); chapter 10. Every recipe's training loop uses them.

Import from the module that holds the idea: ``from transformer_course.training.trainer import
Trainer``.
"""
