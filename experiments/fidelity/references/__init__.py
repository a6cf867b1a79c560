"""Plain-loop transcriptions of the authors' code, one module per method.

Written independently of ``visgrpo.credit`` (Python floats, one token at a time), each module
cites the authors' file it transcribes. The unit tests (tests/credit/) and the benchmarks and
fidelity scripts (experiments/) import them from here:
``from experiments.fidelity.references import vgpo``.
"""
