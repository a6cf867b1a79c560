"""Fidelity: visgrpo's credit methods against transcriptions of the authors' code (see README.md)."""
