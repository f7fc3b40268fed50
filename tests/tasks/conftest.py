import pytest

from vlp.data.synthetic import SynthConfig


@pytest.fixture(scope="module")
def shapes_config() -> SynthConfig:
    """The tasks' shapes world: 24 images (``shapes`` in tests/conftest.py writes it)."""
    return SynthConfig(num_images=24, seed=0)
