"""Benchmarks: visgrpo vs TRL GRPOTrainer, credit overhead, micro-benchmarks (see README.md)."""
