"""Evaluation: bleu, chrf and meteor from scratch, checked against sacreBLEU (chapter 11), on the
input layout of corpus; analysis reports a result as it should be reported (chapters 11, 14).

Import from the module that holds the idea: ``from transformer_course.evaluation.bleu import
corpus_bleu``.
"""
