"""vlp: vision-language pre-training (ViLTA and SemVLP). ``vlp.load(dir)`` loads a saved model;
``vlp.load_predictor(dir)`` gives a :class:`vlp.inference.Predictor` that answers and matches."""

__all__ = ["load", "load_predictor"]


def __getattr__(name: str):
    # Lazy, so that `import vlp` (and `vlp --help`) does not import torch.
    if name == "load":
        from vlp.models.checkpoint import load

        return load
    if name == "load_predictor":
        from vlp.inference import load_predictor

        return load_predictor
    raise AttributeError(f"module 'vlp' has no attribute {name!r}")
