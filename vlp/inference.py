"""The inference API: ``vlp.load_predictor(DIR)`` -> a :class:`Predictor` that answers and matches.

It batches through the same task collator and ``TaskModel.predict`` as ``vlp evaluate`` (eval
transforms, the checkpoint's text length and image size), so an answer here is the answer there. Eval
mode, no gradients, CPU or GPU. This module never imports the training code.

    predictor = vlp.load_predictor("runs/vqa/best")
    predictor.answer("cat.jpg", "what colour is the cat?")          # [("black", 0.91), ...]
    predictor.match(["a.jpg", "b.jpg"], "a red circle")               # [0.97, 0.03]
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from vlp.config import DataConfig
from vlp.data.collate import Collator
from vlp.data.examples import ImageRegistry
from vlp.data.tokenizer import load_tokenizer
from vlp.models.checkpoint import load, read_config
from vlp.tasks import retrieval
from vlp.tasks.base import TaskItem, pair_example
from vlp.tasks.data import TaskCollator
from vlp.tasks.model import TaskModel, backbone_image_size, load_task_model
from vlp.tasks.retrieval import Gallery

ImageLike = str | os.PathLike | Image.Image
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _as_list(value, name: str) -> list:
    """One value (an image, a text, or a tuple: the images of one item, e.g. NLVR2's left and right) or
    a list of them."""
    if isinstance(value, str | os.PathLike | Image.Image | tuple):
        return [value]
    values = list(value)
    if not values:
        raise ValueError(f"{name}: expected at least one")
    return values


def _broadcast(images: list, texts: list) -> tuple[list, list]:
    if len(images) == len(texts):
        return images, texts
    if len(images) == 1:
        return images * len(texts), texts
    if len(texts) == 1:
        return images, texts * len(images)
    raise ValueError(f"{len(images)} images and {len(texts)} texts: give one of either, or as many of each")


def _image_source(image: ImageLike, index: int) -> tuple[str, str, bytes | None]:
    """``(path, id, bytes)`` for the collator: a path as is; a PIL image encoded losslessly (PNG)."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return "", f"pil-{index}", buffer.getvalue()
    path = os.fspath(image)
    return path, path, None


class Predictor:
    """Answers questions (a fine-tuned VQA/GQA checkpoint) and scores image-text matches (any
    checkpoint: the pre-training ITM head)."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        tokenizer,
        data_cfg: DataConfig,
        *,
        task_model: TaskModel | None = None,
        fusion_mode: str = "single",
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        rerank_k: int = retrieval.DEFAULT_K,
        itc_weight: float = retrieval.DEFAULT_ITC_WEIGHT,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.task_model = task_model.to(self.device).eval() if task_model is not None else None
        self.tokenizer = tokenizer
        self.data_cfg = data_cfg
        self.fusion_mode = fusion_mode
        self.batch_size = batch_size
        self.rerank_k = rerank_k
        self.itc_weight = itc_weight

    @property
    def _mode(self) -> str | None:
        return self.fusion_mode if self.backbone.arch == "semvlp" else None

    @property
    def task(self) -> str | None:
        return self.task_model.task.name if self.task_model is not None else None

    def _items(self, images: list, texts: list) -> list[TaskItem]:
        """One item per text, with its image (or its tuple of images: NLVR2's left and right)."""
        registry = ImageRegistry()
        items = []
        for index, (image, text) in enumerate(zip(images, texts, strict=True)):
            group = image if isinstance(image, tuple | list) else (image,)
            examples = []
            for side, one in enumerate(group):
                path, image_id, data = _image_source(one, f"{index}-{side}")
                examples.append(pair_example(registry, text, path, image_id, data))
            items.append(TaskItem(index, examples))
        return items

    @staticmethod
    def _require_all(collated, expected: int) -> None:
        if len(collated.rows) < expected:
            raise ValueError("cannot predict: " + ("; ".join(collated.stats.samples) or "an empty text"))

    def _task_predictions(self, images, texts, top_k: int) -> list[list[tuple[str, float]]]:
        """The fine-tuned task's top-k labels for each item, batched through the task collator."""
        image_list, text_list = _broadcast(_as_list(images, "images"), _as_list(texts, "texts"))
        items = self._items(image_list, text_list)
        task = self.task_model.task
        wrong = [len(item.examples) for item in items if len(item.examples) != task.pairs_per_item]
        if wrong:
            raise ValueError(f"{task.name} reads {task.pairs_per_item} image(s) per text, got {wrong[0]}")
        collator = TaskCollator(task, self.tokenizer, self.data_cfg, train=False)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            collated = collator.collate(chunk, seed=0)
            self._require_all(collated, len(chunk))
            predictions = self.task_model.predict(collated.batch.to(self.device), top_k=top_k)
            results.extend(p.top for p in predictions)
        return results

    def _require_task(self, names: Sequence[str], method: str) -> None:
        if self.task not in names:
            have = f"is fine-tuned for {self.task}" if self.task else "has no task"
            wanted = " or ".join(names)
            raise ValueError(f"{method}() needs a checkpoint fine-tuned for {wanted}; this one {have}")

    @torch.no_grad()
    def answer(
        self, images: ImageLike | Sequence[ImageLike], questions: str | Sequence[str], top_k: int = 5
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """The ``top_k`` answers (with probabilities) to each question about its image; one image may serve
        many questions and one question many images. A single question gets a single list back."""
        self._require_task(("vqa", "gqa"), "answer")
        results = self._task_predictions(images, questions, top_k)
        return results[0] if isinstance(questions, str) and len(results) == 1 else results

    @torch.no_grad()
    def classify(self, images, texts: str | Sequence[str]) -> list[tuple[str, float]] | list[list]:
        """NLVR2: is each statement true of its image pair (``(left, right)``)? SNLI-VE: does each image
        entail, contradict or leave open each hypothesis? Every label with its probability, best first."""
        self._require_task(("nlvr2", "snli_ve"), "classify")
        results = self._task_predictions(images, texts, top_k=3)  # every label of either task
        return results[0] if isinstance(texts, str) and len(results) == 1 else results

    @torch.no_grad()
    def match(self, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str]) -> list[float]:
        """The ITM probability that each text describes its image (broadcast as in :meth:`answer`)."""
        image_list, text_list = _broadcast(_as_list(images, "images"), _as_list(texts, "texts"))
        items = self._items(image_list, text_list)
        collator = Collator(self.tokenizer, self.data_cfg, train=False, mlm=False)
        mode = self._mode
        out: list[float] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            collated = collator.collate([item.examples[0] for item in chunk], seed=0)
            self._require_all(collated, len(chunk))
            batch = collated.batch.to(self.device)
            text = self.backbone.embed_text(batch.input_ids, batch.attention_mask)
            image = self.backbone.embed_image(batch.visual)
            pooled = self.backbone.fuse(text, image, batch.image_index, mode).pooled
            out.extend(torch.softmax(self.backbone.heads.itm(pooled).float(), dim=-1)[:, 1].tolist())
        return out

    @torch.no_grad()
    def fill_mask(
        self, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str], top_k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """The ``top_k`` tokens (with probabilities) for the one ``[MASK]`` of each text, read by the
        pre-training MLM head over the text fused with its image (broadcast as in :meth:`answer`)."""
        image_list, text_list = _broadcast(_as_list(images, "images"), _as_list(texts, "texts"))
        mask = self.tokenizer.mask_token
        unmasked = [text for text in text_list if text.count(mask) != 1]
        if unmasked:
            raise ValueError(f"fill_mask: each text needs exactly one {mask}; got {unmasked[0]!r}")
        items = self._items(image_list, text_list)
        collator = Collator(self.tokenizer, self.data_cfg, train=False, mlm=False)
        out: list[list[tuple[str, float]]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            collated = collator.collate([item.examples[0] for item in chunk], seed=0)
            self._require_all(collated, len(chunk))
            batch = collated.batch.to(self.device)
            positions = batch.input_ids == self.tokenizer.mask_token_id
            if int(positions.sum()) != len(chunk):  # a [MASK] cut off by max_text_len
                raise ValueError(f"fill_mask: a {mask} lies beyond max_text_len {self.data_cfg.max_text_len}")
            text = self.backbone.embed_text(batch.input_ids, batch.attention_mask)
            image = self.backbone.embed_image(batch.visual)
            fused = self.backbone.fuse(text, image, batch.image_index, self._mode)
            probabilities = torch.softmax(self.backbone.mlm_logits(fused, positions).float(), dim=-1)
            top = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
            for values, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                out.append(list(zip(self.tokenizer.convert_ids_to_tokens(ids), values, strict=True)))
        return out

    # ---- retrieval

    @torch.no_grad()
    def index(self, candidates: ImageLike | str | Sequence[ImageLike] | Sequence[str]) -> Gallery:
        """Encode candidates once (captions: strings; images: paths or PIL images) into a reusable
        :class:`~vlp.tasks.retrieval.Gallery` (``.save(path)`` / ``Gallery.load(path)``)."""
        values = [candidates] if isinstance(candidates, str | os.PathLike | Image.Image) else list(candidates)
        if not values:
            raise ValueError("index: no candidates")
        collator = Collator(self.tokenizer, self.data_cfg, train=False, mlm=False)
        if all(isinstance(v, str) for v in values) and not any(_looks_like_image(v) for v in values):
            return retrieval.encode_texts(self.backbone, collator, values, device=self.device)
        sources = [_image_source(v, i) for i, v in enumerate(values)]
        keys = [path or image_id for path, image_id, _ in sources]
        examples = retrieval.image_examples(sources)
        return retrieval.encode_images(self.backbone, collator, examples, keys, self.batch_size, self.device)

    @torch.no_grad()
    def retrieve(
        self, query: ImageLike | str, candidates, k: int = 5, rerank_k: int | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best candidates for ``query`` (a caption ranks images, an image ranks captions), each
        with its score: ITC candidates re-ranked by ITM as ``vlp evaluate --task retrieval`` ranks them.
        ``candidates``: a list (encoded now) or a :class:`Gallery` from :meth:`index` (encoded once)."""
        gallery = candidates if isinstance(candidates, Gallery) else self.index(candidates)
        gallery = gallery.to(self.device)
        query_is_text = isinstance(query, str) and not _looks_like_image(query)
        if query_is_text == (gallery.kind == "text"):
            kind = "caption" if query_is_text else "image"
            raise ValueError(
                f"retrieve: captions query images and images query captions; got a {kind} query and "
                f"{gallery.kind} candidates"
            )
        queries = self.index([query])
        depth = self.rerank_k if rerank_k is None else rerank_k
        scores = retrieval.rank_candidates(
            self.backbone, queries, gallery, depth, self._mode, itc_weight=self.itc_weight
        )[0]
        best = scores.topk(min(k, len(gallery))).indices.tolist()
        return [(gallery.keys[i], float(scores[i])) for i in best]


def _looks_like_image(value: str) -> bool:
    """A string names an image when it is an existing file with an image suffix."""
    return Path(value).suffix.lower() in IMAGE_SUFFIXES and Path(value).is_file()


def load_predictor(
    directory: str | Path, device: str | torch.device = "cpu", batch_size: int = 32
) -> Predictor:
    """A :class:`Predictor` for the checkpoint in ``directory`` (fine-tuned, or pre-trained: match only)."""
    directory = Path(directory)
    config = read_config(directory)
    tokenizer = load_tokenizer(directory)
    entry = config.get("task") or {}
    rerank_k, itc_weight = retrieval.reranking(entry)
    if entry and entry.get("name") != retrieval.NAME:
        task_model, entry = load_task_model(directory, device)
        backbone = task_model.backbone
        max_len = int(entry.get("max_text_len", DataConfig.max_text_len))
        mode = entry.get("fusion_mode", "single")
    else:
        task_model, backbone = None, load(directory, device)
        vlp_config = config.get("extra", {}).get("vlp_config", {})
        default_len = vlp_config.get("data", {}).get("max_text_len", DataConfig.max_text_len)
        max_len = int(entry.get("max_text_len", default_len))
        mode = entry.get("fusion_mode", "single")
    data_cfg = DataConfig(image_size=backbone_image_size(backbone), max_text_len=max_len)
    return Predictor(
        backbone, tokenizer, data_cfg, task_model=task_model, fusion_mode=mode, device=device,
        batch_size=batch_size, rerank_k=rerank_k, itc_weight=itc_weight,
    )  # fmt: skip
