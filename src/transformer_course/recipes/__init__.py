"""The course's machinery, not the learner's model: the recipes that train the capstones and
run the experiments (translator, tinytalks, length_extrapolation, vit_digits).
"""
