"""Seeds derived from several integers, so every random choice of a run is a function of its position."""

from __future__ import annotations

import numpy as np


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. seed, epoch, rank, batch index)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
