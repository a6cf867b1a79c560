"""Evaluation on the standard benchmarks (``visgrpo eval``): loaders for their published
Hugging Face schemas, rule-based scorers (an optional judge for MathVista / MathVerse),
greedy and avg@k protocols, validation before generation, resumable journaled predictions,
data-parallel ranks, tables and MLflow.

Sits above ``visgrpo.rollout`` (it drives the rollout engines); nothing below imports it.
"""
