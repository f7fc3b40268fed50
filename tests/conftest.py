"""Fixtures for every test: one thread, fixed seeds, and a small shapes world (``shapes``).

``shapes`` is a module-scoped world written by :func:`vlp.data.synthetic.write_shapes_world` from
``shapes_config`` (48 images, seed 0); a folder's conftest.py or a test module overrides ``shapes_config``
for a world of another size (tests/tasks/conftest.py: 24 images).
"""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.train.precision import NATIVE_BF16_ENV

torch.set_num_threads(1)
# train.precision=auto (the tiny presets') means fp32 in every test, on every machine, and in the processes
# the tests start: the figures the tests assert do not depend on the CPU's bf16 support.
os.environ[NATIVE_BF16_ENV] = "0"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def shapes_config() -> SynthConfig:
    return SynthConfig(num_images=48, seed=0)


@pytest.fixture(scope="module")
def shapes(shapes_config, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_world(shapes_config, root)
    return root
