"""A short pre-training of each family (vilta-tiny, semvlp-tiny), then fine-tuning on tasks of the shapes
world: on the held-out split each classification task of ``ASSERTED`` beats its majority answer (or
chance) and the same model trained blind (the image replaced by zeros) by a clear margin, and retrieval
R@1 is far above chance both ways. Budgets and margins: tests/downstream.py. One class per family, so
that pytest-xdist (``--dist loadscope``) runs the two families on two workers."""

import pytest
from downstream import ASSERTED, check_beats_baselines, check_retrieval, pretrained, shapes_world


def pytest_generate_tests(metafunc):
    if "task" in metafunc.fixturenames:
        metafunc.parametrize("task", ASSERTED[metafunc.cls.ARCH])


@pytest.fixture(scope="class")
def world(request, tmp_path_factory):
    shapes = shapes_world(tmp_path_factory.mktemp("shapes"))
    arch = request.cls.ARCH
    return shapes, pretrained(arch, shapes, tmp_path_factory.mktemp("pre")), arch


class FamilyChecks:
    ARCH = ""

    def test_task_beats_majority_and_blind(self, world, tmp_path, task):
        check_beats_baselines(world, tmp_path, task)

    def test_retrieval_far_above_chance_both_ways(self, world, tmp_path):
        check_retrieval(world, tmp_path)


class TestViLTA(FamilyChecks):
    ARCH = "vilta"


class TestSemVLP(FamilyChecks):
    ARCH = "semvlp"
