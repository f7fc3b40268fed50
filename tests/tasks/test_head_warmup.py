"""Head warm-up before fine-tuning (vlp/tasks/head_warmup.py): the head alone learns on the backbone's
frozen pair representations; the backbone and the model's mode are left as they were."""

import pytest
import torch
from test_pairs import DATA, nlvr2_dev

from vlp.config import ConfigError, TrainConfig, load_config
from vlp.data.examples import ImageRegistry
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.tasks.data import TaskCollator
from vlp.tasks.head_warmup import frozen_features, warm_up_head
from vlp.tasks.model import TaskModel
from vlp.tasks.nlvr2 import NLVR2Task

TRAIN = TrainConfig(lr=1e-3, lr_mult_heads=10.0, seed=3)


@pytest.fixture(scope="module")
def nlvr2_setup(shapes):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config("nlvr2-semvlp-tiny", ["data.image_size=32", "model.vision.image_size=32"])
    torch.manual_seed(0)
    backbone = build_model(config.model, vocab_size=len(tokenizer))
    task = NLVR2Task({})
    items = task.items(nlvr2_dev(shapes), ImageRegistry(), train=True)
    return backbone, task, items, TaskCollator(task, tokenizer, DATA, train=False)


def fresh_model(backbone, task) -> TaskModel:
    torch.manual_seed(1)
    return TaskModel(backbone, task, fusion_mode="two").train()


def test_features_are_the_eval_mode_pair_representations_of_each_item(nlvr2_setup):
    backbone, task, items, collator = nlvr2_setup
    model = fresh_model(backbone, task)
    features, targets = frozen_features(model, items, collator, batch_size=3, device=torch.device("cpu"))
    assert model.training  # the mode is restored
    batch = collator(items)
    with torch.no_grad():
        expected = model.eval().pair_representation(batch.batch).reshape(batch.size, -1)
    assert features.shape == (len(items), 2 * model.pooled_size)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)  # batches of 3 equal one batch
    assert targets.tolist() == [item.target for item in items]


def test_warm_up_trains_the_head_alone_and_is_deterministic(nlvr2_setup):
    backbone, task, items, collator = nlvr2_setup
    backbone_before = {k: v.clone() for k, v in backbone.state_dict().items()}
    heads = []
    for _ in range(2):
        model = fresh_model(backbone, task)
        start = {k: v.clone() for k, v in model.head.state_dict().items()}
        figures = warm_up_head(
            model, items, collator, TRAIN, epochs=40, batch_size=4, device=torch.device("cpu"),
            feature_batch_size=8,
        )  # fmt: skip
        assert model.training and all(p.grad is None for p in model.parameters())
        assert figures["head_warmup/last_loss"] < 0.5 * figures["head_warmup/first_loss"]
        assert figures["head_warmup/last_nlvr2_acc"] >= 0.75  # a handful of items, nearly learnt by heart
        assert any(not torch.equal(v, start[k]) for k, v in model.head.state_dict().items())
        heads.append(model.head.state_dict())
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, backbone_before[name]), name
    for name, value in heads[0].items():
        assert torch.equal(value, heads[1][name]), name


def test_warm_up_options_are_checked():
    with pytest.raises(ConfigError, match="task.head_warmup_batch_size"):
        load_config("nlvr2-vilta-tiny", ["task.head_warmup_batch_size=0"])
    with pytest.raises(ConfigError, match="task.head_warmup_epochs"):
        load_config("nlvr2-vilta-tiny", ["task.head_warmup_epochs=-1"])
