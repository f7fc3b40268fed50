"""What every objective returns, and small helpers they share."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# The loss names the trainer knows; ``ObjectivesConfig.weights`` is keyed by them.
LOSS_NAMES = ("mlm", "itm", "itc", "mvm", "qa", "text_mlm")


def weighted_total(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum(weights[name] * losses[name])`` in float32 over the losses whose weight is not 0: the one place
    losses are weighted.

    A loss without a weight is an error naming it; so are no losses at all, a loss called "total" (the name
    is reserved for the weighted sum) and losses that all have weight 0. Losses of weight 0 are left out of
    the sum entirely, so they have no effect on the gradients even if they are not finite.
    """
    if not losses:
        raise ValueError("the objective returned no losses")
    if "total" in losses:
        raise ValueError("'total' is reserved for the weighted sum; rename that loss")
    missing = [name for name in losses if name not in weights]
    if missing:
        raise ValueError(
            f"the objective returned loss(es) {missing} with no weight in objectives.weights "
            f"(weights are given for {sorted(weights)})"
        )
    terms = [weights[name] * loss.float() for name, loss in losses.items() if weights[name] != 0]
    if not terms:
        raise ValueError(
            f"every loss the objective returned ({sorted(losses)}) has weight 0: nothing to train"
        )
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]


@dataclass
class ObjectiveOutput:
    """Unweighted losses by name (scalars with a graph), detached metrics (plain floats) and, once
    :meth:`weighted` has run, their weighted sum ``total`` (what the trainer back-propagates)."""

    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    total: Tensor | None = None

    def update(self, other: ObjectiveOutput) -> ObjectiveOutput:
        """Add ``other``'s losses and metrics to this one; a loss computed twice is a bug."""
        for name in other.losses:
            if name in self.losses:
                raise ValueError(f"loss '{name}' was computed twice")
        self.losses.update(other.losses)
        self.metrics.update(other.metrics)
        return self

    def weighted(self, weights: Mapping[str, float]) -> ObjectiveOutput:
        """Set ``total`` to :func:`weighted_total` of the losses and ``weights``; returns ``self``."""
        self.total = weighted_total(self.losses, weights)
        return self


def zero_loss(like: Tensor) -> Tensor:
    """A zero that stays connected to ``like``'s graph, so every parameter still gets a (zero) gradient.

    Used when a batch has nothing for an objective (no masked token, no question): under DDP every rank
    must produce gradients for the same parameters.
    """
    return like.sum() * 0.0


def image_groups(image_index: Tensor, image_group: Tensor, num_images: int) -> Tensor:
    """The group id of each distinct image ([I] long); -1 for an image that no text points at."""
    groups = torch.full((num_images,), -1, dtype=image_group.dtype, device=image_group.device)
    groups[image_index] = image_group
    return groups


def sample_positions(
    eligible: Tensor, ratio: float, generator: torch.Generator | None = None, option: str = "mask_ratio"
) -> Tensor:
    """Per row of ``eligible`` [R, N] (bool): ``max(1, round(ratio * n))`` of its n eligible positions, chosen
    uniformly at random (none for a row with none). ``option`` names the setting in the error message."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"{option} must be in (0, 1], got {ratio}")
    count = eligible.sum(1)
    wanted = torch.floor(count.float() * ratio + 0.5).long()  # round half up
    wanted = torch.minimum(torch.clamp(wanted, min=1), count)
    scores = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    scores = scores.masked_fill(~eligible, 2.0)  # ineligible positions rank last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return (rank < wanted[:, None]) & eligible


@contextlib.contextmanager
def eval_mode(module: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """``module`` in eval mode (dropout off) inside the block, each submodule's own mode restored after;
    a no-op with ``enabled`` False."""
    modes = [(m, m.training) for m in module.modules()] if enabled else []
    if enabled:
        module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


_WARNED: set[str] = set()


def warn_once(logger: logging.Logger, message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def reset_warnings() -> None:
    """Forget which messages :func:`warn_once` logged, so each is logged again (e.g. between tests)."""
    _WARNED.clear()
