"""Evaluation on the standard benchmarks (``visgrpo eval``): loaders for their published
Hugging Face schemas, rule-based scorers, greedy and avg@k protocols, tables and MLflow.

Sits above ``visgrpo.rollout`` (it drives the rollout engines); nothing below imports it.
"""
