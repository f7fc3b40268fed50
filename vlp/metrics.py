"""Evaluation metrics: VQA accuracy with the official answer normalisation, recall@k, accuracy.

The VQA part follows the published rules of the official VQA evaluation script
(``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA), quirks included, so that
scores computed here match the leaderboard's:

* a prediction is cleaned with :func:`vlp.data.answers.normalize_answer` (newlines and tabs to spaces,
  strip, punctuation, then lower-case, number words to digits, articles dropped, contractions restored);
* the ground-truth answers are left as they are when all annotators gave the same string, otherwise
  only their punctuation is processed (the released annotations are already normalised otherwise);
* the score is the mean, over each annotator left out in turn, of ``min(1, matches among the rest / 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vlp.data.answers import normalize_answer, process_punctuation

# --------------------------------------------------------------------------- VQA accuracy


def vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """The official VQA accuracy of one predicted answer against the annotators' answers (10 in VQAv2).

    Mean over each annotator left out in turn of ``min(1, number of the others equal to it / 3)``; so
    with 10 annotators, 3 or more matches give 1.0, 2 give 0.6, 1 gives 0.3.
    """
    if not gt_answers:
        raise ValueError("vqa_accuracy: gt_answers is empty; a question needs at least one annotator answer")
    predicted = normalize_answer(prediction)
    answers = list(gt_answers)
    if len(set(answers)) > 1:
        answers = [process_punctuation(answer) for answer in answers]
    matches = [answer == predicted for answer in answers]
    total = sum(matches)
    # Leaving annotator i out removes its own match (if any) from the count.
    per_subset = [min(1.0, (total - int(match)) / 3.0) for match in matches]
    return sum(per_subset) / len(per_subset)


def vqa_score_batch(predictions: Sequence[str], gt_answers: Sequence[Sequence[str]]) -> list[float]:
    """:func:`vqa_accuracy` of each prediction against its own list of annotator answers."""
    if len(predictions) != len(gt_answers):
        raise ValueError(
            f"vqa_score_batch: {len(predictions)} predictions but {len(gt_answers)} lists of answers"
        )
    return [
        vqa_accuracy(prediction, answers) for prediction, answers in zip(predictions, gt_answers, strict=True)
    ]


def vqa_soft_score(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-example soft score of the arg-max answer: ``targets[b, argmax(logits[b])]`` ([B] float).

    With the soft targets of :func:`vlp.data.formats.vqa.answer_targets` this is the usual training-time
    estimate of VQA accuracy (it ignores answers outside the vocabulary).
    """
    if logits.shape != targets.shape or logits.dim() != 2:
        raise ValueError(
            f"vqa_soft_score: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            "must both be [batch, num_answers]"
        )
    best = logits.argmax(dim=1, keepdim=True)
    return targets.gather(1, best).squeeze(1).float()


def mean_vqa_soft_score(logits: Tensor, targets: Tensor) -> float:
    """The mean of :func:`vqa_soft_score` over the questions; 0.0 for no question."""
    return vqa_soft_score(logits, targets).mean().item() if logits.shape[0] else 0.0


# --------------------------------------------------------------------------- retrieval


def _positive_mask(positives: Sequence[set[int]] | Tensor, shape: torch.Size) -> Tensor:
    if isinstance(positives, Tensor):
        if positives.shape != shape:
            raise ValueError(
                f"recall_at_k: positives mask {tuple(positives.shape)} does not match scores {tuple(shape)}"
            )
        return positives.bool()
    if len(positives) != shape[0]:
        raise ValueError(f"recall_at_k: {len(positives)} positive sets for {shape[0]} queries")
    mask = torch.zeros(shape, dtype=torch.bool)
    for query, items in enumerate(positives):
        for item in items:
            if not 0 <= item < shape[1]:
                raise ValueError(f"recall_at_k: query {query} has positive {item}, outside 0..{shape[1] - 1}")
            mask[query, item] = True
    return mask


def recall_at_k(
    scores: Tensor, positives: Sequence[set[int]] | Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Fraction of queries with at least one positive among their ``k`` best-scored candidates.

    ``scores`` is ``[Q, C]`` (query by candidate, higher = better); ``positives`` gives, per query, the set
    of correct candidate indices, or is a ``[Q, C]`` bool mask. Works in both directions: text->image
    (queries are captions, one positive image each) and image->text (queries are images, their captions
    positive). Ties are counted against the query: a negative scored equal to the best positive ranks
    above it, so a constant scorer gets no credit. Returns ``{"r@1": ..., "r@5": ..., "r_mean": ...}``.
    """
    if scores.dim() != 2:
        raise ValueError(f"recall_at_k: scores must be [queries, candidates], got {tuple(scores.shape)}")
    mask = _positive_mask(positives, scores.shape).to(scores.device)
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"recall_at_k: query {int(empty[0])} has no positive candidate")
    scores = scores.float()
    best_positive = scores.masked_fill(~mask, float("-inf")).max(dim=1, keepdim=True).values
    # 0-based rank of the best positive = how many negatives score at least as high.
    rank = ((scores >= best_positive) & ~mask).sum(dim=1)
    result = {f"r@{k}": (rank < k).float().mean().item() for k in ks}
    result["r_mean"] = sum(result.values()) / len(ks) if ks else 0.0
    return result


def retrieval_recalls(
    text_image_scores: Tensor, text_to_image: Sequence[int] | Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k both ways from one ``[T, I]`` caption-by-image score matrix.

    ``text_to_image[t]`` is the image of caption ``t``. Keys: ``"t2i_r@k"`` (caption queries),
    ``"i2t_r@k"`` (image queries; every caption of the image is a positive) and ``"rsum"`` (their sum,
    in percent as the papers report it).
    """
    targets = torch.as_tensor(text_to_image, dtype=torch.long)
    num_texts, num_images = text_image_scores.shape
    if targets.shape != (num_texts,):
        raise ValueError(f"retrieval_recalls: {targets.numel()} image indices for {num_texts} captions")
    mask = torch.zeros(num_texts, num_images, dtype=torch.bool)
    mask[torch.arange(num_texts), targets] = True
    t2i = recall_at_k(text_image_scores, mask, ks)
    i2t = recall_at_k(text_image_scores.t(), mask.t(), ks)
    result = {f"t2i_{key}": value for key, value in t2i.items() if key != "r_mean"}
    result.update({f"i2t_{key}": value for key, value in i2t.items() if key != "r_mean"})
    result["rsum"] = 100.0 * sum(result.values())
    return result


# --------------------------------------------------------------------------- classification


def accuracy(pred: Tensor | Sequence, target: Tensor | Sequence) -> float:
    """Fraction of correct predictions. ``pred`` is labels ``[N]`` or scores ``[N, C]`` (arg-max taken).

    No examples (``N == 0``, e.g. a batch without a masked token) give 0.0, so a training metric never
    fails on an empty batch; predictions and targets of different lengths are a ValueError.
    """
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target)
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(dim=-1)
    if pred.shape != target.shape:
        raise ValueError(
            f"accuracy: predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ"
        )
    if target.numel() == 0:
        return 0.0
    return (pred == target).float().mean().item()
