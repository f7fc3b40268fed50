"""Image-text retrieval on the Karpathy splits (COCO, Flickr30K): ITC candidates re-ranked by ITM.

Data (``--data ROOT``, as released): the Karpathy file (the one ``dataset_*.json`` in ROOT, or
``--captions FILE``), images ``IMAGES/<filepath>/<filename>`` (``--images``, default ``ROOT/images``);
splits ``train`` (+ ``restval``), ``val``, ``test``.

* Fine-tuning: ITC + ITM with in-batch hard negatives sampled from the ITC similarity, i.e. the
  pre-training objectives (:class:`vlp.objectives.PretrainingObjectives`) with MLM off; every caption of
  an image is its match.
* Evaluation: every image and every caption is encoded once into a :class:`Gallery` (unimodal states for
  the fusion, ITC embeddings for the similarity). For each query the ``k`` best candidates by ITC
  similarity are re-scored by the ITM head, many pairs per forward, each image's encoding reused, as
  ITM positive logit + ``itc_weight`` x ITC cosine similarity (BLIP's rule, ALBEF's with weight 0); the
  other candidates keep their ITC order below them. ``k = 0`` (all) scores every pair so, computed once
  for both directions: with ``itc_weight = 0`` the exact cross-encoder ranking. The weight (default 5) is
  ours: after short fine-tuning the ITC ranking is the better one at R@1 and ITM alone re-ranks its top
  candidates worse (docs/decisions.md). Under torchrun each rank re-ranks a share of the queries and the
  score rows are gathered.
* Metrics, in percent: text retrieval (image queries: any caption of the image is right) and image
  retrieval (caption queries) R@1/5/10, ``rsum`` (their sum, as papers report it) and ``r_mean``.
* Result file: per caption query its top-10 images, per image query its top-10 captions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from vlp.data.collate import Collator
from vlp.data.examples import Example, image_key
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.records import CaptionRecord
from vlp.files import replace_atomically
from vlp.metrics import recall_at_k
from vlp.models.outputs import ImageFeatures, TextFeatures
from vlp.tasks.base import Task, TaskDataError
from vlp.weights import read_safetensors

NAME = "retrieval"
METRIC = "rsum"
SPLITS = ("train", "val", "test")
KS = (1, 5, 10)
DEFAULT_K = 128  # re-ranking depth of a checkpoint that does not say (zero-shot from pre-training)
DEFAULT_ITC_WEIGHT = 5.0  # weight of the ITC similarity in a re-ranked score, for one that does not say
# Re-ranked candidates score ITM + weight x ITC; the rest their ITC similarity minus this, below them.
_BELOW = 1.0e4


def find_captions(root: Path, captions: str = "") -> Path:
    """The Karpathy file: ``captions`` when given, else the one ``dataset_*.json`` in ``root``."""
    if captions:
        path = Path(captions)
        if not path.is_file():
            raise TaskDataError(f"--captions {captions}: no such file")
        return path
    found = sorted(Path(root).glob("dataset_*.json"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise TaskDataError(
            f"{root}: expected exactly one Karpathy file dataset_*.json (found: {listed}); "
            "name it with --captions FILE"
        )
    return found[0]


def read_split(root: Path, images: Path, split: str, captions: str = "") -> list[CaptionRecord]:
    if split not in SPLITS:
        raise TaskDataError(f"retrieval split {split!r}: expected one of {', '.join(SPLITS)}")
    path = find_captions(root, captions)
    records = read_karpathy(path, images, split)
    if not records:
        raise TaskDataError(f"{path}: split {split!r} has no images")
    return records


class RetrievalTask(Task):
    """Retrieval's place among the tasks: its name, metric and splits. It has no head (the ITC
    projections and the ITM head of pre-training rank the pairs), so it is fine-tuned with the
    pre-training objectives and evaluated by :func:`evaluate_split`, not through ``TaskModel``."""

    name = NAME
    metric = METRIC
    train_split = "train"
    val_split = "val"

    @classmethod
    def splits(cls, root: Path) -> list[str]:
        return list(SPLITS)

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list[CaptionRecord]:
        return read_split(root, images, split)


def task_entry(config) -> dict:
    """The ``task`` entry of a retrieval checkpoint (its re-ranking depth, fusion mode, text length)."""
    return {
        "name": NAME,
        "state": {"rerank_k": config.task.rerank_k, "itc_weight": config.task.rerank_itc_weight},
        "fusion_mode": config.task.fusion_mode,
        "question_only": False,
        "max_text_len": config.data.max_text_len,
    }


def reranking(entry: dict) -> tuple[int, float]:
    """``(k, itc_weight)`` of a checkpoint's ``task`` entry (a pre-trained checkpoint has none: the
    defaults)."""
    state = (entry.get("state") or {}) if entry.get("name") == NAME else {}
    return int(state.get("rerank_k", DEFAULT_K)), float(state.get("itc_weight", DEFAULT_ITC_WEIGHT))


# --------------------------------------------------------------------------- galleries


@dataclass
class Gallery:
    """Encodings of a set of images or captions, computed once and reused by every query.

    ``hidden``/``mask``: the unimodal states the fusion reads (``embed_image`` / ``embed_text``; texts
    padded to one length, padding masked); ``embeddings``: the L2-normalised ITC embeddings.
    """

    kind: str  # "image" | "text"
    keys: list[str]  # image paths / caption texts, in order
    hidden: Tensor
    mask: Tensor
    embeddings: Tensor

    def __len__(self) -> int:
        return len(self.keys)

    def features(self, rows: Tensor) -> TextFeatures | ImageFeatures:
        cls = ImageFeatures if self.kind == "image" else TextFeatures
        return cls(hidden=self.hidden[rows], mask=self.mask[rows])

    def to(self, device: torch.device | str) -> Gallery:
        return Gallery(
            self.kind, self.keys, self.hidden.to(device), self.mask.to(device), self.embeddings.to(device)
        )

    def save(self, path: str | os.PathLike) -> Path:
        """One safetensors file (the keys in its metadata), written atomically."""
        from safetensors.torch import save_file

        tensors = {"hidden": self.hidden, "mask": self.mask, "embeddings": self.embeddings}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"kind": self.kind, "keys": json.dumps(self.keys)}
        return replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        path = Path(path)
        try:
            tensors, metadata = read_safetensors(path, what="retrieval index")
            parts = {name: tensors[name] for name in ("hidden", "mask", "embeddings")}
            return cls(metadata["kind"], json.loads(metadata["keys"]), **parts)
        except (KeyError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a vlp retrieval index ({err})") from err


def image_examples(sources: Sequence[tuple[str, str, bytes | None]]) -> list[Example]:
    """Examples for :meth:`Collator.images` from ``(path, id, bytes)``."""
    return [
        Example(text="", image_key=image_key(i, p, b is not None), image_group=0, image_path=p, image_bytes=b,
                image_id=i)
        for p, i, b in sources
    ]  # fmt: skip


@torch.no_grad()
def encode_images(
    backbone: nn.Module,
    collator: Collator,
    examples: Sequence[Example],
    keys: Sequence[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> Gallery:
    """Encode each image once; an unreadable image is an error naming it (it would break the ranking)."""
    hidden, mask, embeddings = [], [], []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        visual, slots, stats = collator.images(chunk)
        if -1 in slots:
            raise ValueError(f"cannot encode the gallery: {'; '.join(stats.samples)}")
        visual = visual.to(device)
        features = backbone.embed_image(visual)
        order = torch.tensor(slots, device=features.hidden.device)
        hidden.append(features.hidden[order])
        mask.append(features.mask[order])
        embeddings.append(backbone.image_itc_embeddings(features)[order])
    return Gallery("image", list(keys), torch.cat(hidden), torch.cat(mask), torch.cat(embeddings))


@torch.no_grad()
def encode_texts(
    backbone: nn.Module,
    collator: Collator,
    texts: Sequence[str],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> Gallery:
    """Encode each caption once (states padded to the longest caption, padding masked)."""
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = collator.texts(texts[start : start + batch_size])
        ids, attention = batch.input_ids.to(device), batch.attention_mask.to(device)
        features = backbone.embed_text(ids, attention)
        parts.append((features.hidden, features.mask, backbone.text_itc_embeddings(features)))
    length = max(h.shape[1] for h, _, _ in parts)
    hidden = torch.cat([nn.functional.pad(h, (0, 0, 0, length - h.shape[1])) for h, _, _ in parts])
    mask = torch.cat([nn.functional.pad(m, (0, length - m.shape[1])) for _, m, _ in parts])
    return Gallery("text", list(texts), hidden, mask, torch.cat([e for _, _, e in parts]))


# --------------------------------------------------------------------------- ranking


@torch.no_grad()
def itm_logits(
    backbone: nn.Module,
    texts: Gallery,
    images: Gallery,
    text_rows: Tensor,
    image_rows: Tensor,
    mode: str | None = None,
    pairs_per_batch: int = 512,
) -> Tensor:
    """The ITM match logit of each pair ``(texts[text_rows[p]], images[image_rows[p]])``, ``[P]``.

    Pairs go through the fusion ``pairs_per_batch`` at a time; each distinct image and each distinct
    text of a batch is passed once and gathered by index, as in training.
    """
    out = []
    for start in range(0, len(text_rows), pairs_per_batch):
        batch = slice(start, start + pairs_per_batch)
        image_distinct, image_index = image_rows[batch].unique(return_inverse=True)
        text_distinct, text_index = text_rows[batch].unique(return_inverse=True)
        fused = backbone.fuse(
            texts.features(text_distinct),
            images.features(image_distinct),
            image_index,
            mode=mode,
            text_index=text_index,
        )
        out.append(backbone.heads.retrieval_score(fused.pooled).float())
    return torch.cat(out) if out else torch.zeros(0)


def rank_candidates(
    backbone: nn.Module,
    queries: Gallery,
    candidates: Gallery,
    k: int = DEFAULT_K,
    mode: str | None = None,
    rows: Tensor | None = None,
    pairs_per_batch: int = 512,
    itc_weight: float = 0.0,
) -> Tensor:
    """Scores ``[queries, candidates]`` (higher = better) of each query (``rows``: a subset) against
    every candidate: ITM logit + ``itc_weight`` x ITC similarity for its ``k`` best candidates by ITC
    similarity (all for ``k = 0``), ITC similarity ranked below them for the rest. Captions query images
    or images query captions."""
    if queries.kind == candidates.kind:
        other = "image" if queries.kind == "text" else "text"
        raise ValueError(f"retrieval: {queries.kind} queries need {other} candidates, got {candidates.kind}s")
    texts, images = (queries, candidates) if queries.kind == "text" else (candidates, queries)
    if rows is None:
        rows = torch.arange(len(queries), device=queries.embeddings.device)
    return _rerank(backbone, texts, images, queries.kind, rows, k, mode, pairs_per_batch, itc_weight)


def _rerank(
    backbone: nn.Module,
    texts: Gallery,
    images: Gallery,
    queries: str,
    rows: Tensor,
    k: int,
    mode: str | None,
    pairs_per_batch: int,
    itc_weight: float,
) -> Tensor:
    query, candidates = (texts, images) if queries == "text" else (images, texts)
    similarity = query.embeddings[rows].float() @ candidates.embeddings.float().T
    k = len(candidates) if k <= 0 else min(k, len(candidates))
    top = similarity.topk(k, dim=1).indices
    query_rows = rows[:, None].expand(-1, k).reshape(-1)
    candidate_rows = top.reshape(-1)
    pairs = (query_rows, candidate_rows) if queries == "text" else (candidate_rows, query_rows)
    logits = itm_logits(backbone, texts, images, *pairs, mode=mode, pairs_per_batch=pairs_per_batch)
    reranked = logits.view(len(rows), k).to(similarity.dtype) + itc_weight * similarity.gather(1, top)
    return (similarity - _BELOW).scatter_(1, top, reranked)


def _identity(items: list) -> list:
    return items


def score_matrices(
    backbone: nn.Module,
    texts: Gallery,
    images: Gallery,
    k: int = 128,
    mode: str | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[list], list] = _identity,
    pairs_per_batch: int = 512,
    itc_weight: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Caption-query scores ``[T, I]`` and image-query scores ``[I, T]`` (see the module docstring).

    This process scores the query rows ``rank::world_size``; ``gather`` (every rank's list of
    ``(row, scores)``, e.g. an all-gather) assembles the full matrices.
    """
    full = k <= 0 or (k >= len(images) and k >= len(texts))
    image_rows = torch.arange(len(images), device=images.hidden.device)[rank::world_size]
    if full:  # the cross-encoder: every pair once, image by image (one image per fused batch)
        part = _rerank(backbone, texts, images, "image", image_rows, 0, mode, pairs_per_batch, itc_weight)
        i2t = _assemble(gather, image_rows, part, len(images))
        return i2t.T.contiguous(), i2t
    text_rows = torch.arange(len(texts), device=texts.hidden.device)[rank::world_size]
    t2i_part = _rerank(backbone, texts, images, "text", text_rows, k, mode, pairs_per_batch, itc_weight)
    i2t_part = _rerank(backbone, texts, images, "image", image_rows, k, mode, pairs_per_batch, itc_weight)
    return _assemble(gather, text_rows, t2i_part, len(texts)), _assemble(
        gather, image_rows, i2t_part, len(images)
    )


def _assemble(gather: Callable[[list], list], rows: Tensor, scores: Tensor, total: int) -> Tensor:
    pieces = gather([(int(r), s.cpu()) for r, s in zip(rows.tolist(), scores, strict=True)])
    out = torch.empty(total, scores.shape[1])
    for row, values in pieces:
        out[row] = values
    return out


# --------------------------------------------------------------------------- metrics and files


def caption_index(records: Sequence[CaptionRecord]) -> tuple[list[str], list[str], list[int]]:
    """Image paths, captions (in record order) and the image row of each caption."""
    paths = [r.image_path for r in records]
    captions, owner = [], []
    for i, record in enumerate(records):
        captions.extend(record.captions)
        owner.extend([i] * len(record.captions))
    return paths, captions, owner


def score(t2i: Tensor, i2t: Tensor, text_to_image: Sequence[int]) -> dict:
    """Recall@1/5/10 in percent both ways, their sum (``rsum``) and mean (``r_mean``)."""
    targets = torch.as_tensor(list(text_to_image), dtype=torch.long)
    positives = torch.zeros(t2i.shape, dtype=torch.bool)
    positives[torch.arange(len(targets)), targets] = True
    image_retrieval = recall_at_k(t2i, positives, KS)
    text_retrieval = recall_at_k(i2t, positives.T, KS)
    result = {
        "text_retrieval": {f"r{k}": round(100 * text_retrieval[f"r@{k}"], 2) for k in KS},
        "image_retrieval": {f"r{k}": round(100 * image_retrieval[f"r@{k}"], 2) for k in KS},
    }
    total = sum(result["text_retrieval"].values()) + sum(result["image_retrieval"].values())
    result["rsum"] = round(total, 2)
    result["r_mean"] = round(total / (2 * len(KS)), 2)
    result["images"], result["captions"] = t2i.shape[1], t2i.shape[0]
    return result


def result_file(
    t2i: Tensor, i2t: Tensor, paths: Sequence[str], captions: Sequence[str], top: int = 10
) -> dict:
    t2i_top = t2i.topk(min(top, t2i.shape[1]), dim=1).indices.tolist()
    i2t_top = i2t.topk(min(top, i2t.shape[1]), dim=1).indices.tolist()
    return {
        "image_retrieval": [
            {"caption": c, "images": [paths[j] for j in row]}
            for c, row in zip(captions, t2i_top, strict=True)
        ],
        "text_retrieval": [
            {"image": p, "captions": [captions[j] for j in row]}
            for p, row in zip(paths, i2t_top, strict=True)
        ],
    }


# --------------------------------------------------------------------------- one split, end to end


@dataclass
class RetrievalResult:
    metrics: dict
    t2i: Tensor  # [captions, images] scores
    i2t: Tensor  # [images, captions] scores
    paths: list[str]
    captions: list[str]
    owner: list[int]  # the image row of each caption
    seconds: float


def evaluate_split(
    backbone: nn.Module,
    records: Sequence[CaptionRecord],
    collator: Collator,
    *,
    k: int = 128,
    mode: str | None = None,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[list], list] = _identity,
    image_batch: int = 64,
    pairs_per_batch: int = 512,
    itc_weight: float = 0.0,
) -> RetrievalResult:
    """Encode the split's images and captions once, rank both ways, score (see the module docstring)."""
    import time

    started = time.perf_counter()
    was_training = backbone.training
    backbone.eval()
    try:
        paths, captions, owner = caption_index(records)
        examples = image_examples([(p, p, None) for p in paths])
        images = encode_images(backbone, collator, examples, paths, image_batch, device)
        texts = encode_texts(backbone, collator, captions, device=device)
        t2i, i2t = score_matrices(
            backbone, texts, images, k, mode, rank=rank, world_size=world_size, gather=gather,
            pairs_per_batch=pairs_per_batch, itc_weight=itc_weight,
        )  # fmt: skip
    finally:
        backbone.train(was_training)
    metrics = score(t2i, i2t, owner)
    metrics["k"] = k if 0 < k < max(len(paths), len(captions)) else "all"
    return RetrievalResult(metrics, t2i, i2t, paths, captions, owner, time.perf_counter() - started)


def sheet_entries(result: RetrievalResult, count: int = 12, top: int = 5) -> list:
    """Caption queries (every ``len / count``-th) with their top images, the right image marked."""
    from vlp.sheets import SheetEntry

    step = max(1, len(result.captions) // count)
    entries = []
    for query in range(0, len(result.captions), step)[:count]:
        best = result.t2i[query].topk(min(top, result.t2i.shape[1])).indices.tolist()
        marks = [j == result.owner[query] for j in best]
        entries.append(
            SheetEntry(
                images=[result.paths[j] for j in best],
                lines=[f"query: {result.captions[query]}", f"right image at rank {_rank_of(result, query)}"],
                correct=marks[0],
                image_marks=marks,
            )
        )
    return entries


def _rank_of(result: RetrievalResult, query: int) -> int:
    order = result.t2i[query].argsort(descending=True).tolist()
    return order.index(result.owner[query]) + 1
