"""vlp: vision-language pre-training (ViLTA and SemVLP). ``vlp.load(dir)`` loads a saved model."""

__all__ = ["load"]


def __getattr__(name: str):
    # Lazy, so that `import vlp` (and `vlp --help`) does not import torch.
    if name == "load":
        from vlp.models.checkpoint import load

        return load
    raise AttributeError(f"module 'vlp' has no attribute {name!r}")
