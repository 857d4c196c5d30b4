"""Training: losses (label smoothing), scheduler (warm-up schedules), checkpoint (atomic saves,
weights-only loads) and trainer (the loop, mixed precision, resume); chapter 10.

Import from the module that holds the idea: ``from transformer_course.training.trainer import
Trainer``.
"""
