"""A short pre-training of vilta-tiny, then fine-tuning on tasks of the shapes world: on the held-out
split each classification task of ``ASSERTED`` beats its majority answer (or chance) and the same model
trained blind (the image replaced by zeros) by a clear margin, and retrieval R@1 is far above chance both
ways.
Budgets and margins: tests/downstream.py."""

import pytest
from downstream import ASSERTED, check_beats_baselines, check_retrieval, pretrained, shapes_world

ARCH = "vilta"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    shapes = shapes_world(tmp_path_factory.mktemp("shapes"))
    return shapes, pretrained(ARCH, shapes, tmp_path_factory.mktemp("pre"))


@pytest.mark.parametrize("task", ASSERTED[ARCH])
def test_task_beats_majority_and_blind(world, tmp_path, task):
    check_beats_baselines(world, tmp_path, task)


def test_retrieval_far_above_chance_both_ways(world, tmp_path):
    check_retrieval(world, tmp_path)
