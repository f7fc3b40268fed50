import json
import logging
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset
from transformers import BertTokenizerFast

from vlp.config import DataConfig
from vlp.data.batch import Batch, VisualInput
from vlp.data.build import build_pretrain_loaders
from vlp.data.collate import Collator
from vlp.data.examples import Example, PairDataset
from vlp.data.images import ImageTransform
from vlp.data.loader import PretrainLoader
from vlp.data.qa import AnswerTargets, QADataset
from vlp.data.records import CaptionRecord, RegionFeatureRecord, VQARecord
from vlp.data.skips import TooManyBadExamples

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] a the red green blue circle square left right of is on ##s . what color"
).split()
ID = {w: i for i, w in enumerate(WORDS)}
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (90, 90, 90)]


@pytest.fixture
def tokenizer():
    return BertTokenizerFast(vocab=dict(ID))


def _cfg(**overrides) -> DataConfig:
    values = dict(image_size=8, max_text_len=12, batch_size=3, mlm_probability=0.15)
    values.update(overrides)
    return DataConfig(**values)


def _save(path, color=(0, 0, 0), size=(12, 10), array=None) -> str:
    image = Image.fromarray(array) if array is not None else Image.new("RGB", size, color)
    image.save(path)
    return str(path)


def _records(tmp_path, n_images=7, captions_per_image=2) -> list[CaptionRecord]:
    captions = ["a red circle", "the blue square left of a circle", "a green square", "circles on squares"]
    records = []
    for i in range(n_images):
        noise = np.random.RandomState(i).randint(0, 256, (10, 12 + i, 3)).astype(np.uint8)
        path = _save(tmp_path / f"img{i}.png", array=noise)
        texts = [captions[(i + c) % len(captions)] for c in range(captions_per_image)]
        records.append(CaptionRecord(image_id=str(i), image_path=path, captions=texts))
    return records


def _halves_image(tmp_path) -> str:
    array = np.zeros((16, 16, 3), dtype=np.uint8)
    array[:, 8:] = 255  # left half black, right half white
    return _save(tmp_path / "halves.png", array=array)


def _tokens(batch: Batch, row: int) -> list[str]:
    ids = batch.input_ids[row][batch.attention_mask[row]].tolist()
    return [WORDS[i] for i in ids]


def _assert_same_batch(a: Batch, b: Batch) -> None:
    for f in fields(Batch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, VisualInput):
            for g in fields(VisualInput):
                xv, yv = getattr(x, g.name), getattr(y, g.name)
                assert (xv is None and yv is None) or torch.equal(xv, yv), g.name
        else:
            assert (x is None and y is None) or torch.equal(x, y), f.name


class _Counting(Dataset):
    """Records which indices were read."""

    def __init__(self, inner):
        self.inner, self.reads = inner, []

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.inner[index]


# --------------------------------------------------------------------------- collation


def test_batch_fields_shapes_dtypes_and_dedup(tmp_path, tokenizer):
    records = _records(tmp_path, n_images=3, captions_per_image=1)
    records[0].captions.append("a red square")  # image 0 now has two captions
    dataset = PairDataset(records)
    assert len(dataset) == 4
    examples = [dataset[i] for i in range(4)]  # img0, img0, img1, img2
    batch = Collator(tokenizer, _cfg(), train=False).collate(examples, seed=0).batch

    assert batch.visual.pixel_values.shape == (3, 3, 8, 8)  # three distinct images, each once
    assert batch.visual.pixel_values.dtype == torch.float32
    assert batch.visual.region_features is None
    assert batch.image_index.tolist() == [0, 0, 1, 2] and batch.image_index.dtype == torch.long
    assert batch.image_group.tolist() == [0, 0, 1, 2] and batch.image_group.dtype == torch.long
    longest = len("[CLS] the blue square left of a circle [SEP]".split())
    assert batch.input_ids.shape == (4, longest) and batch.input_ids.dtype == torch.long
    assert batch.attention_mask.dtype == torch.bool
    assert batch.input_ids[0].tolist() == [ID[w] for w in "[CLS] a red circle [SEP]".split()] + [0] * (
        longest - 5
    )
    assert batch.attention_mask.sum(1).tolist() == [5, 5, longest, 5]
    assert batch.mlm_input_ids.shape == batch.input_ids.shape and batch.mlm_labels.dtype == torch.long
    assert batch.has_answer is None and batch.answer_targets is None
    expected = ImageTransform(8)(Image.open(records[1].image_path).convert("RGB"))[0]
    assert torch.allclose(batch.visual.pixel_values[1], expected)


def test_text_is_truncated_to_max_text_len(tmp_path, tokenizer):
    records = _records(tmp_path, n_images=1, captions_per_image=1)
    records[0].captions = ["a red circle left of a blue square on the green square"]
    batch = Collator(tokenizer, _cfg(max_text_len=6), train=False).collate([PairDataset(records)[0]]).batch
    assert _tokens(batch, 0) == "[CLS] a red circle left [SEP]".split()


def test_padding_and_special_tokens_are_never_masked(tmp_path, tokenizer):
    records = _records(tmp_path, n_images=4, captions_per_image=2)
    dataset = PairDataset(records)
    collator = Collator(tokenizer, _cfg(mlm_probability=1.0), train=True)
    batch = collator.collate([dataset[i] for i in range(len(dataset))], seed=5).batch
    special = torch.isin(batch.input_ids, torch.tensor([ID["[CLS]"], ID["[SEP]"], ID["[PAD]"]]))
    assert torch.equal(batch.mlm_labels, torch.where(special, -100, batch.input_ids))
    assert torch.equal(batch.mlm_input_ids[special], batch.input_ids[special])
    assert (~batch.attention_mask).any()  # there was padding to protect


def test_default_masking_leaves_padding_alone_across_seeds(tmp_path, tokenizer):
    dataset = PairDataset(_records(tmp_path, n_images=4, captions_per_image=2))
    collator = Collator(tokenizer, _cfg(mlm_probability=0.5), train=True)
    for seed in range(10):
        batch = collator.collate([dataset[i] for i in range(len(dataset))], seed=seed).batch
        padding = ~batch.attention_mask
        assert (batch.mlm_labels[padding] == -100).all()
        assert torch.equal(batch.mlm_input_ids[padding], batch.input_ids[padding])
        assert ((batch.mlm_labels != -100).sum(1) >= 1).all()


def test_whole_word_masking_masks_all_pieces(tmp_path, tokenizer):
    records = [CaptionRecord("0", _save(tmp_path / "a.png"), ["circles squares circles of squares"])]
    collator = Collator(tokenizer, _cfg(mlm_probability=0.4, whole_word_mask=True), train=True)
    example = PairDataset(records)[0]
    for seed in range(15):
        batch = collator.collate([example], seed=seed).batch
        chosen = (batch.mlm_labels[0] != -100).tolist()
        # tokens: [CLS] circle ##s square ##s circle ##s of square ##s [SEP]
        for first, second in [(1, 2), (3, 4), (5, 6), (8, 9)]:
            assert chosen[first] == chosen[second]


def test_collation_is_deterministic_given_the_seed(tmp_path, tokenizer):
    dataset = PairDataset(_records(tmp_path))
    collator = Collator(tokenizer, _cfg(hflip=True), train=True)
    examples = [dataset[i] for i in range(6)]
    _assert_same_batch(collator.collate(examples, seed=11).batch, collator.collate(examples, seed=11).batch)
    a, b = collator.collate(examples, seed=11).batch, collator.collate(examples, seed=12).batch
    assert not torch.equal(a.visual.pixel_values, b.visual.pixel_values)


def test_flip_swaps_left_and_right_in_the_text(tmp_path, tokenizer):
    path = _halves_image(tmp_path)
    records = [CaptionRecord("h", path, ["the red circle left of the square"])]
    collator = Collator(tokenizer, _cfg(hflip=True, image_size=16, mlm_probability=0.0), train=True)
    outcomes = set()
    for seed in range(20):
        batch = collator.collate([PairDataset(records)[0]], seed=seed).batch
        pixels = batch.visual.pixel_values[0]
        mirrored = pixels[:, :, :8].mean() > pixels[:, :, 8:].mean()  # the dark half moved right
        words = _tokens(batch, 0)
        assert ("right" in words) == bool(mirrored) and ("left" in words) != bool(mirrored)
        outcomes.add(bool(mirrored))
    assert outcomes == {True, False}


def test_no_flip_at_eval_even_with_hflip(tmp_path, tokenizer):
    records = [CaptionRecord("h", _halves_image(tmp_path), ["circle left of square"])]
    collator = Collator(tokenizer, _cfg(hflip=True, image_size=16), train=False)
    for seed in range(5):
        batch = collator.collate([PairDataset(records)[0]], seed=seed).batch
        assert "left" in _tokens(batch, 0)


# --------------------------------------------------------------------------- question answering


def _qa_example(path: str, answers: dict[int, float]) -> Example:
    return Example(
        text="what is left of the circle", image_key="q", image_group=9, image_path=path, answers=answers
    )


def test_qa_examples_fill_answer_targets(tmp_path, tokenizer):
    caption = PairDataset([CaptionRecord("c", _save(tmp_path / "c.png"), ["a red circle"])])[0]
    qa = _qa_example(_save(tmp_path / "q.png"), {2: 1.0, 0: 0.5})
    collator = Collator(tokenizer, _cfg(), train=False, targets=AnswerTargets(["left", "right", "red"]))
    batch = collator.collate([caption, qa], seed=0).batch
    assert batch.has_answer.tolist() == [False, True]
    assert batch.answer_targets.shape == (2, 3)
    assert batch.answer_targets.tolist() == [[0.0, 0.0, 0.0], [0.5, 0.0, 1.0]]


def test_flipped_qa_example_swaps_its_answer(tmp_path, tokenizer):
    path = _halves_image(tmp_path)
    targets = AnswerTargets(["left", "right", "red"])
    collator = Collator(tokenizer, _cfg(hflip=True, image_size=16), train=True, targets=targets)
    outcomes = set()
    for seed in range(20):
        batch = collator.collate([_qa_example(path, {0: 1.0})], seed=seed).batch
        pixels = batch.visual.pixel_values[0]
        mirrored = bool(pixels[:, :, :8].mean() > pixels[:, :, 8:].mean())
        assert batch.answer_targets[0].tolist() == ([0.0, 1.0, 0.0] if mirrored else [1.0, 0.0, 0.0])
        assert ("right" in _tokens(batch, 0)) == mirrored
        outcomes.add(mirrored)
    assert outcomes == {True, False}


def test_no_flip_when_the_swapped_answer_is_not_a_class(tmp_path, tokenizer):
    path = _halves_image(tmp_path)
    collator = Collator(
        tokenizer, _cfg(hflip=True, image_size=16), train=True, targets=AnswerTargets(["left", "red"])
    )
    for seed in range(10):
        batch = collator.collate([_qa_example(path, {0: 1.0})], seed=seed).batch
        pixels = batch.visual.pixel_values[0]
        assert pixels[:, :, :8].mean() < pixels[:, :, 8:].mean()
        assert "left" in _tokens(batch, 0) and batch.answer_targets[0].tolist() == [1.0, 0.0]


def test_qa_dataset_soft_targets_and_filters(tmp_path):
    path = str(tmp_path / "COCO_1.jpg")
    records = [
        VQARecord(1, 1, path, "what color is the circle", answers=["red"] * 7 + ["blue"] * 3),
        VQARecord(2, 1, path, "what shape", answers=["hexagon"] * 10),  # no answer in the vocabulary
        VQARecord(3, 2, str(tmp_path / "COCO_2.jpg"), "what color", answers=["blue"] * 10),
    ]
    dataset = QADataset(records, ["red", "blue"])
    assert len(dataset) == 2
    assert dataset[0].answers == {0: 1.0, 1: 0.9} and dataset[0].text == "what color is the circle"
    assert dataset[1].answers == {1: 1.0}
    assert dataset[0].image_group != dataset[1].image_group
    kept = QADataset(records, ["red", "blue"], exclude_images={dataset[1].image_key})
    assert [e.text for e in kept.examples] == ["what color is the circle"]


# --------------------------------------------------------------------------- region features


def _region(image_id, n, dim=4, w=100, h=50) -> RegionFeatureRecord:
    boxes = np.tile(np.array([[10, 5, 60, 50]], dtype=np.float32), (n, 1))
    return RegionFeatureRecord(
        image_id=image_id, image_h=h, image_w=w, boxes=boxes,
        features=np.arange(n * dim, dtype=np.float32).reshape(n, dim),
        object_ids=np.arange(n, dtype=np.int64) + 7, object_confs=np.ones(n, np.float32),
        attr_ids=np.zeros(n, np.int64), attr_confs=np.ones(n, np.float32),
    )  # fmt: skip


def test_region_features_replace_pixels(tmp_path, tokenizer):
    records = [
        CaptionRecord("1", str(tmp_path / "missing1.jpg"), ["a red circle"]),
        CaptionRecord("2", str(tmp_path / "COCO_val_2.jpg"), ["a blue square", "a square"]),
        CaptionRecord("3", str(tmp_path / "three.jpg"), ["a green circle"]),
    ]
    regions = {"1": _region("1", 2), "COCO_val_2": _region("COCO_val_2", 3)}  # the second found by file stem
    dataset = PairDataset(records)
    result = Collator(tokenizer, _cfg(), train=True, regions=regions).collate([dataset[i] for i in range(4)])
    visual = result.batch.visual
    assert visual.pixel_values is None
    assert visual.region_features.shape == (2, 3, 4)
    assert visual.region_mask.tolist() == [[True, True, False], [True, True, True]]
    assert torch.equal(visual.region_features[0, :2], torch.arange(8.0).view(2, 4))
    assert (visual.region_features[0, 2] == 0).all()
    assert torch.allclose(visual.region_boxes[1, 0], torch.tensor([0.1, 0.1, 0.6, 1.0]))
    assert visual.region_labels.tolist() == [[7, 8, -100], [7, 8, 9]]
    assert result.batch.image_index.tolist() == [0, 1, 1]
    assert result.stats.missing_regions == 1 and "three.jpg" in result.stats.samples[0]


# --------------------------------------------------------------------------- skip and count


def _dataset_with_bad_examples(tmp_path) -> PairDataset:
    records = _records(tmp_path, n_images=10, captions_per_image=2)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    records.append(CaptionRecord("bad", str(garbage), ["a red circle", "a blue circle"]))
    records.append(CaptionRecord("empty", records[0].image_path, ["   "]))
    return PairDataset(records)  # 23 examples, 3 bad


def test_bad_examples_are_skipped_counted_and_warned_once(tmp_path, tokenizer, caplog):
    dataset = _dataset_with_bad_examples(tmp_path)
    loader = PretrainLoader(
        dataset, Collator(tokenizer, _cfg(), train=True), batch_size=4, drop_last=False, max_bad_fraction=0.2
    )
    with caplog.at_level(logging.WARNING, logger="vlp.data.loader"):
        batches = list(loader)
    assert sum(b.size for b in batches) == 20
    warnings = [r.getMessage() for r in caplog.records if r.name == "vlp.data.loader"]
    assert len(warnings) == 1
    summary = "train data, epoch 0: skipped 3 of 23 examples (2 unreadable images, 1 empty caption); first: "
    assert warnings[0].startswith(summary) and "garbage.jpg" in warnings[0]  # names the files (issue 12)


def test_too_many_bad_examples_fail_with_a_clear_message(tmp_path, tokenizer):
    dataset = _dataset_with_bad_examples(tmp_path)
    loader = PretrainLoader(
        dataset, Collator(tokenizer, _cfg(), train=True), batch_size=4, drop_last=False, max_bad_fraction=0.1
    )
    with pytest.raises(TooManyBadExamples, match=r"data.max_bad_fraction=0.1.*garbage.jpg"):
        list(loader)


# --------------------------------------------------------------------------- order, resume, ranks


def _loader(dataset, tokenizer, **kwargs) -> PretrainLoader:
    collator = Collator(tokenizer, _cfg(hflip=True, mlm_probability=0.3), train=True)
    return PretrainLoader(dataset, collator, batch_size=3, seed=123, **kwargs)


def _take(loader, n):
    out = []
    while len(out) < n:
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                break
    return out


def test_epochs_advance_and_reshuffle(tmp_path, tokenizer):
    dataset = _Counting(PairDataset(_records(tmp_path)))  # 14 examples, 4 batches of 3
    loader = _loader(dataset, tokenizer)
    assert len(loader) == 4
    list(loader)
    first = list(dataset.reads)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches_done"] == 0
    dataset.reads.clear()
    list(loader)
    assert len(set(first)) == 12 and len(set(dataset.reads)) == 12
    assert first != dataset.reads  # a new order each epoch
    loader.set_epoch(0)
    dataset.reads.clear()
    list(loader)
    assert dataset.reads == first  # the order of an epoch is a function of (seed, epoch)


def test_each_batch_draws_its_own_randomness(tmp_path, tokenizer):
    image = _records(tmp_path, n_images=1)[0].image_path
    dataset = PairDataset([CaptionRecord("0", image, ["the blue square left of a circle"] * 12)])
    batches = list(_loader(dataset, tokenizer))  # four batches of identical examples
    crops = {tuple(b.visual.pixel_values.flatten()[:20].tolist()) for b in batches}
    masks = {tuple(b.mlm_labels.flatten().tolist()) for b in batches}
    assert len(crops) == 4 and len(masks) > 1


def test_resume_mid_epoch_gives_the_same_batches(tmp_path, tokenizer):
    dataset = PairDataset(_records(tmp_path))
    reference = _take(_loader(dataset, tokenizer), 7)  # 4 batches of epoch 0, 3 of epoch 1

    for stop in (2, 5):
        first = _loader(dataset, tokenizer)
        _take(first, stop)
        state = first.state_dict()
        assert (state["epoch"], state["batches_done"]) == divmod(stop, 4)
        counting = _Counting(dataset)
        resumed = _loader(counting, tokenizer)
        resumed.load_state_dict(state)
        next(iter(resumed))
        assert len(counting.reads) == 3  # skipped batches were never loaded
        resumed.load_state_dict(state)
        rest = _take(resumed, 7 - stop)
        for a, b in zip(reference[stop:], rest, strict=True):
            _assert_same_batch(a, b)


def test_workers_give_the_same_batches(tmp_path, tokenizer):
    dataset = PairDataset(_records(tmp_path))
    plain = list(_loader(dataset, tokenizer))
    loader = _loader(dataset, tokenizer, num_workers=2)
    loader.load_state_dict({"epoch": 0, "batches_done": 1})
    for a, b in zip(plain[1:], list(loader), strict=True):
        _assert_same_batch(a, b)


def test_two_ranks_cover_disjoint_examples(tmp_path, tokenizer):
    base = PairDataset(_records(tmp_path, n_images=6))  # 12 examples
    reads = []
    for rank in (0, 1):
        dataset = _Counting(base)
        loader = PretrainLoader(
            dataset, Collator(tokenizer, _cfg(), train=True), batch_size=2, rank=rank, world_size=2, seed=5
        )
        assert len(loader) == 3
        list(loader)
        reads.append(dataset.reads)
    assert len(reads[0]) == len(reads[1]) == 6
    assert not set(reads[0]) & set(reads[1])
    assert sorted(reads[0] + reads[1]) == list(range(12))
    single = _Counting(base)
    list(PretrainLoader(single, Collator(tokenizer, _cfg(), train=True), batch_size=2, seed=5))
    assert reads[0] == single.reads[0::2] and reads[1] == single.reads[1::2]  # one permutation, dealt out


def test_too_few_examples_for_a_batch_is_an_error(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="data.batch_size=32"):
        PretrainLoader(
            PairDataset(_records(tmp_path)), Collator(tokenizer, _cfg(), train=True), batch_size=32
        )


def test_bad_state_is_rejected(tmp_path, tokenizer):
    loader = _loader(PairDataset(_records(tmp_path)), tokenizer)
    with pytest.raises(ValueError, match="batches_done"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="out of range"):
        loader.load_state_dict({"epoch": 0, "batches_done": 99})


# --------------------------------------------------------------------------- streams


class _Stream(IterableDataset):
    """A tiny in-memory stream whose order depends on the epoch."""

    def __init__(self, examples):
        self.examples, self.epoch = examples, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.examples), generator=torch.Generator().manual_seed(self.epoch))
        return iter([self.examples[i] for i in order.tolist()])


def test_stream_loader_resumes_and_splits_by_rank(tmp_path, tokenizer):
    pairs = PairDataset(_records(tmp_path))
    stream = _Stream([pairs[i] for i in range(len(pairs))])
    loader = _loader(stream, tokenizer)
    with pytest.raises(TypeError, match="stream"):
        len(loader)
    reference = _take(loader, 6)  # 4 batches in epoch 0 (14 examples, the last 2 dropped), then epoch 1
    assert loader.state_dict()["epoch"] == 1
    resumed = _loader(stream, tokenizer, num_workers=2)
    resumed.load_state_dict({"epoch": 0, "batches_done": 3})
    for a, b in zip(reference[3:], _take(resumed, 3), strict=True):
        _assert_same_batch(a, b)
    texts = []
    for rank in (0, 1):
        ranked = PretrainLoader(
            stream, Collator(tokenizer, _cfg(), train=False), batch_size=7, rank=rank, world_size=2
        )
        texts.append(sorted(int(g) for b in ranked for g in b.image_group))
    assert sorted(texts[0] + texts[1]) == sorted(e.image_group for e in stream.examples)


# --------------------------------------------------------------------------- building from the config


def _write_karpathy(tmp_path) -> DataConfig:
    root = tmp_path / "images"
    (root / "train2014").mkdir(parents=True)
    images = []
    for i in range(8):
        name = f"COCO_train2014_{i:012d}.jpg"
        _save(root / "train2014" / name, COLORS[i % len(COLORS)])
        split = "val" if i >= 6 else ("restval" if i == 5 else "train")
        sentences = [{"raw": "a red circle"}, {"raw": "a blue square left of a circle"}]
        images.append(
            {"filepath": "train2014", "filename": name, "cocoid": i, "split": split, "sentences": sentences}
        )
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return _cfg(train=str(path), images_root=str(root), batch_size=2, max_val_images=1)


def test_build_pretrain_loaders_from_karpathy(tmp_path, tokenizer):
    cfg = _write_karpathy(tmp_path)
    data = build_pretrain_loaders(cfg, tokenizer, seed=0)
    train, val = data.train, data.val
    assert data.answer_vocab is None and data.regions is None
    assert len(train.dataset) == 12 and len(train) == 6  # train + restval: 6 images x 2 captions
    assert len(val.dataset) == 2 and len(val) == 1  # capped at one validation image
    batch = next(iter(train))
    assert batch.size == 2 and batch.visual.pixel_values.shape[1:] == (3, 8, 8)
    first, again = next(iter(val)), next(iter(val))
    _assert_same_batch(first, again)  # validation batches do not change between evaluations
    capped = build_pretrain_loaders(replace(cfg, max_train_images=2), tokenizer, seed=0).train
    assert len(capped.dataset) == 4


def test_build_pretrain_loaders_with_vqa_questions(tmp_path, tokenizer):
    cfg = _write_karpathy(tmp_path)
    questions = [{"image_id": i, "question": "what color", "question_id": 100 + i} for i in (0, 1, 7)]
    answers = [{"answer": "red", "answer_confidence": "yes", "answer_id": 1}] * 10
    annotations = []
    for i, answer in ((0, "red"), (1, "green"), (7, "red")):
        annotations.append(
            {"question_id": 100 + i, "image_id": i, "multiple_choice_answer": answer,
             "answers": [dict(a, answer=answer) for a in answers], "answer_type": "other",
             "question_type": "what color"}
        )  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps({"data_subtype": "train2014", "questions": questions}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": annotations}))
    cfg = replace(cfg, vqa=f"{tmp_path / 'q.json'},{tmp_path / 'a.json'}")  # val capped at image 6
    data = build_pretrain_loaders(cfg, tokenizer, seed=0, answer_min_count=1)
    train = data.train
    assert data.answer_vocab == ["red", "green"]
    # image 7 is a validation image (beyond the cap of one): its question is left out
    assert len(train.dataset) == 12 + 2
    qa = [train.dataset[i] for i in (12, 13)]
    assert [e.answers for e in qa] == [{0: 1.0}, {1: 1.0}]
    assert qa[0].image_group == train.dataset[0].image_group  # the same file as caption image 0
    batch = train.collator.collate(qa + [train.dataset[0]], seed=0).batch
    assert batch.has_answer.tolist() == [True, True, False]
    assert batch.image_index.tolist() == [0, 1, 0] and batch.visual.num_images == 2


def test_build_pretrain_loaders_from_webdataset_shards(tmp_path, tokenizer):
    from vlp.data.formats.webdataset import write_shards

    records = _records(tmp_path, n_images=5, captions_per_image=1)
    write_shards(records, tmp_path / "shards", samples_per_shard=2)
    cfg = _cfg(
        format="webdataset", train=str(tmp_path / "shards" / "shard-{000000..000002}.tar"), batch_size=2
    )
    data = build_pretrain_loaders(cfg, tokenizer, seed=0)
    assert data.val is None
    batches = list(data.train)
    assert [b.size for b in batches] == [2, 2]
    assert len({int(g) for b in batches for g in b.image_group}) == 4


def test_unknown_format_is_named(tokenizer):
    with pytest.raises(ValueError, match="data.format"):
        build_pretrain_loaders(_cfg(format="csv"), tokenizer, seed=0)
