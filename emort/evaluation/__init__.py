"""Evaluation: metrics (numpy only), judges, the honest enhancement protocol."""
