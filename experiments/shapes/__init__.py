"""The shapes demonstration experiment (issue 7): SFT warm start, then RL with DAPO and each
visual credit method on synthetic evidence VQA, with a report written from the MLflow runs.
"""
