"""Scores: DSC, sensitivity, precision, logit shift, and a prediction against a reference."""
