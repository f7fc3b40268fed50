"""Retrieval evaluation: galleries encoded once, ITC top-k re-ranked by ITM, recall@k against brute force."""

import pytest
import torch

from vlp.config import DataConfig, load_config
from vlp.data.collate import Collator
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.tasks import retrieval
from vlp.tasks.base import TaskDataError


@pytest.fixture(scope="module", params=["vilta", "semvlp"])
def galleries(request, shapes):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    config = load_config(f"{request.param}-tiny", ["data.image_size=32", "model.vision.image_size=32"])
    torch.manual_seed(0)
    backbone = build_model(config.model, vocab_size=len(tokenizer)).eval()
    records = retrieval.read_split(shapes, shapes / "images", "test")
    paths, captions, owner = retrieval.caption_index(records)
    collator = Collator(tokenizer, DataConfig(image_size=32), train=False, mlm=False)
    examples = retrieval.image_examples([(p, p, None) for p in paths])
    images = retrieval.encode_images(backbone, collator, examples, paths, batch_size=3)
    texts = retrieval.encode_texts(backbone, collator, captions, batch_size=7)
    mode = "two" if request.param == "semvlp" else None
    return backbone, texts, images, owner, mode


def brute_force_recall(scores, positives, k):
    hits = 0
    for q in range(scores.shape[0]):
        order = sorted(range(scores.shape[1]), key=lambda c: -float(scores[q, c]))
        hits += any(c in positives[q] for c in order[:k])
    return 100 * hits / scores.shape[0]


def test_read_split_finds_the_karpathy_file_and_names_problems(shapes, tmp_path):
    assert len(retrieval.read_split(shapes, shapes / "images", "train")) > 0
    with pytest.raises(TaskDataError, match="expected one of train, val, test"):
        retrieval.read_split(shapes, shapes / "images", "restval")
    with pytest.raises(TaskDataError, match="exactly one Karpathy file"):
        retrieval.read_split(tmp_path, tmp_path, "test")


def test_full_reranking_equals_the_cross_encoder_and_recall_equals_brute_force(galleries):
    backbone, texts, images, owner, mode = galleries
    t2i, i2t = retrieval.score_matrices(backbone, texts, images, k=0, mode=mode, pairs_per_batch=5)
    # the cross-encoder, pair by pair
    expected = torch.empty(len(texts), len(images))
    for t in range(len(texts)):
        for i in range(len(images)):
            expected[t, i] = retrieval.itm_logits(
                backbone, texts, images, torch.tensor([t]), torch.tensor([i]), mode=mode
            )[0]
    torch.testing.assert_close(t2i, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(i2t, expected.T)
    # k = all candidates is the same ranking as k = 0
    t2i_all, i2t_all = retrieval.score_matrices(backbone, texts, images, k=len(texts), mode=mode)
    torch.testing.assert_close(t2i_all, t2i, atol=1e-4, rtol=1e-4)
    # with an ITC weight every pair scores ITM + weight x cosine similarity (BLIP's rule)
    t2i_w, _ = retrieval.score_matrices(backbone, texts, images, k=0, mode=mode, itc_weight=5.0)
    torch.testing.assert_close(
        t2i_w, expected + 5.0 * texts.embeddings @ images.embeddings.T, atol=1e-4, rtol=1e-4
    )
    metrics = retrieval.score(t2i, i2t, owner)
    text_positives = [{owner[t]} for t in range(len(texts))]
    image_positives = [{t for t, o in enumerate(owner) if o == i} for i in range(len(images))]
    for k in (1, 5, 10):
        assert metrics["image_retrieval"][f"r{k}"] == round(brute_force_recall(t2i, text_positives, k), 2)
        assert metrics["text_retrieval"][f"r{k}"] == round(brute_force_recall(i2t, image_positives, k), 2)
    assert metrics["rsum"] == pytest.approx(
        sum(metrics["image_retrieval"].values()) + sum(metrics["text_retrieval"].values()), abs=0.02
    )


def test_top_k_reranks_only_itc_candidates_and_shards_merge_to_one_process(galleries):
    backbone, texts, images, _, mode = galleries
    t2i, i2t = retrieval.score_matrices(backbone, texts, images, k=2, mode=mode, itc_weight=5.0)
    similarity = texts.embeddings @ images.embeddings.T
    top2 = similarity.topk(2, dim=1).indices
    for t in range(len(texts)):
        best = set(t2i[t].topk(2).indices.tolist())
        assert best == set(top2[t].tolist())  # the re-ranked candidates outrank every other image
    # two "ranks" each scoring half the queries, gathered: the same matrices
    parts = []
    for r in range(2):
        parts.append(retrieval.score_matrices(backbone, texts, images, k=2, mode=mode, rank=r, world_size=2,
                                    gather=lambda items: items, itc_weight=5.0))  # fmt: skip
    merged_t2i = torch.where(torch.arange(len(texts))[:, None] % 2 == 0, parts[0][0], parts[1][0])
    torch.testing.assert_close(merged_t2i, t2i)


def test_gallery_saves_and_loads(galleries, tmp_path):
    _, texts, _, _, _ = galleries
    path = texts.save(tmp_path / "index.safetensors")
    loaded = retrieval.Gallery.load(path)
    assert loaded.keys == texts.keys and loaded.kind == "text"
    torch.testing.assert_close(loaded.embeddings, texts.embeddings)
    with pytest.raises(FileNotFoundError, match="retrieval index not found"):
        retrieval.Gallery.load(tmp_path / "missing.safetensors")
