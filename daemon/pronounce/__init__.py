"""Pronunciation practice: compare what a learner said with a target sentence."""
