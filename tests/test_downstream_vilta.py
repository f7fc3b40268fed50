"""A short pre-training of vilta-tiny, then fine-tuning on VQA and GQA of the shapes world: on the held-out
split it beats the majority answer and the same model trained blind (the image replaced by zeros) by a
clear margin. Budgets: see tests/downstream.py.

Not here yet, because at these budgets the margin over the blind model is not there (README, downstream
table): NLVR2 (56.7 with and without the image), SNLI-VE (94.4 both: the shapes world's hypotheses give
their label away), retrieval after 60 steps (image R@1 6.7 against chance 3.3), and SemVLP (VQA 41.3
both)."""

import pytest
from downstream import pretrained, shapes_world, with_and_without_image

ARCH = "vilta"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    shapes = shapes_world(tmp_path_factory.mktemp("shapes"))
    return shapes, pretrained(ARCH, shapes, tmp_path_factory.mktemp("pre"))


@pytest.mark.parametrize("task, metric", [("vqa", "overall"), ("gqa", "accuracy")])
def test_question_answering_beats_majority_and_question_only(world, tmp_path, task, metric):
    shapes, checkpoint = world
    figures = with_and_without_image(checkpoint, shapes, tmp_path, task, metric)
    assert figures["score"] > figures["majority"] + 15, figures
    assert figures["score"] > figures["blind"] + 5, figures
