"""GPU check of visgrpo: ``python -m experiments.gpu_check`` (see ``__main__``)."""
