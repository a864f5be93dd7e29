"""Semantic tokens: what is played (melody, harmony, rhythm), 25 per second."""
