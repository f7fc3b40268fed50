"""Evaluation metrics: VQA accuracy with the official answer normalisation, recall@k, accuracy.

The VQA part follows the published rules of the official VQA evaluation script
(``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA), quirks included, so that
scores computed here match the leaderboard's:

* a prediction is cleaned with :func:`normalize_answer` (newlines and tabs to spaces, strip, punctuation,
  then lower-case, number words to digits, articles dropped, contractions restored);
* the ground-truth answers are left as they are when all annotators gave the same string, otherwise
  only their punctuation is processed (the released annotations are already normalised otherwise);
* the score is the mean, over each annotator left out in turn, of ``min(1, matches among the rest / 3)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

# --------------------------------------------------------------------------- VQA answer normalisation

# Characters removed, or turned into a space, by the punctuation step. The apostrophe, the colon and
# the period are not in the list (periods have their own rule below).
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
# A comma between two digits anywhere in the answer ("1,000") switches every punctuation character from
# "replace by a space" to "delete".
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit is deleted ("3.5" keeps its period). The official call passes
# ``re.UNICODE`` (== 32) positionally as the substitution count, so at most 32 periods go; we keep that.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_SUBSTITUTIONS = 32

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table: a word equal to a key becomes the value. It is applied after
# lower-casing, so the few capitalised keys never match; they are kept to mirror the table as published
# (as is its odd "somebody'd" -> "somebodyd" entry).
_CONTRACTIONS_TABLE = """
aint ain't | arent aren't | cant can't | couldve could've | couldnt couldn't | couldn'tve couldn't've
couldnt've couldn't've | didnt didn't | doesnt doesn't | dont don't | hadnt hadn't | hadnt've hadn't've
hadn'tve hadn't've | hasnt hasn't | havent haven't | hed he'd | hed've he'd've | he'dve he'd've | hes he's
howd how'd | howll how'll | hows how's | Id've I'd've | I'dve I'd've | Im I'm | Ive I've | isnt isn't
itd it'd | itd've it'd've | it'dve it'd've | itll it'll | let's let's | maam ma'am | mightnt mightn't
mightnt've mightn't've | mightn'tve mightn't've | mightve might've | mustnt mustn't | mustve must've
neednt needn't | notve not've | oclock o'clock | oughtnt oughtn't | ow's'at 'ow's'at | 'ows'at 'ow's'at
'ow'sat 'ow's'at | shant shan't | shed've she'd've | she'dve she'd've | she's she's | shouldve should've
shouldnt shouldn't | shouldnt've shouldn't've | shouldn'tve shouldn't've | somebody'd somebodyd
somebodyd've somebody'd've | somebody'dve somebody'd've | somebodyll somebody'll | somebodys somebody's
someoned someone'd | someoned've someone'd've | someone'dve someone'd've | someonell someone'll
someones someone's | somethingd something'd | somethingd've something'd've | something'dve something'd've
somethingll something'll | thats that's | thered there'd | thered've there'd've | there'dve there'd've
therere there're | theres there's | theyd they'd | theyd've they'd've | they'dve they'd've | theyll they'll
theyre they're | theyve they've | twas 'twas | wasnt wasn't | wed've we'd've | we'dve we'd've | weve we've
werent weren't | whatll what'll | whatre what're | whats what's | whatve what've | whens when's
whered where'd | wheres where's | whereve where've | whod who'd | whod've who'd've | who'dve who'd've
wholl who'll | whos who's | whove who've | whyll why'll | whyre why're | whys why's | wont won't
wouldve would've | wouldnt wouldn't | wouldnt've wouldn't've | wouldn'tve wouldn't've | yall y'all
yall'll y'all'll | y'allll y'all'll | yall'd've y'all'd've | y'alld've y'all'd've | y'all'dve y'all'd've
youd you'd | youd've you'd've | you'dve you'd've | youll you'll | youre you're | youve you've
"""
CONTRACTIONS: dict[str, str] = dict(
    pair.split() for pair in _CONTRACTIONS_TABLE.replace("\n", " | ").split("|") if pair.strip()
)


def process_punctuation(text: str) -> str:
    """The official punctuation step (no lower-casing, no word mapping)."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        # Whether a mark is deleted or spaced out is decided on the input text, as the official code does.
        if delete_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_SUBSTITUTIONS)


def process_digits_articles(text: str) -> str:
    """The official word step: lower-case, number words to digits, drop articles, restore contractions."""
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """Normalise an answer exactly as the official VQA evaluation normalises a prediction.

    >>> normalize_answer("The two dogs!")
    '2 dogs'
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_articles(process_punctuation(text))


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
    """Fraction of correct predictions. ``pred`` is labels ``[N]`` or scores ``[N, C]`` (arg-max taken)."""
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target)
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(dim=-1)
    if pred.shape != target.shape:
        raise ValueError(
            f"accuracy: predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ"
        )
    if target.numel() == 0:
        raise ValueError("accuracy: no examples")
    return (pred == target).float().mean().item()
