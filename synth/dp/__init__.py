"""Differential privacy: the accountant and budget split, DP-SGD, private preprocessing, and
the one-run audit that checks a claimed epsilon."""
