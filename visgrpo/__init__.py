"""visgrpo: RLVR for vision-language models with visually grounded credit assignment."""

__version__ = "0.1.0"
