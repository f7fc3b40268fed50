"""Image-text contrastive learning: symmetric multi-positive InfoNCE with a learnable temperature.

Texts of the same image (equal ``image_group``) are all positives of that image, and an image's positives
are all of its texts: the target is uniform over the positives. Under ``torch.distributed`` the embeddings
of every rank are gathered *with* gradient; each rank scores its own texts against all images and its own
images against all texts (the mean over ranks is the loss over the global batch, and DDP's gradient
averaging makes it exact).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vlp.config import ITCConfig
from vlp.data.batch import Batch
from vlp.models.outputs import ImageFeatures, TextFeatures
from vlp.objectives.base import ObjectiveOutput, image_groups, zero_loss
from vlp.ranks import rank_and_world_size


class ContrastiveTemperature(nn.Module):
    """Holds ``log(1 / T)``; calling it returns the logit scale ``1 / T`` with T clamped to
    [``min_temperature``, ``max_temperature``].

    With ``learnable`` it is a parameter, otherwise a fixed buffer. ``PretrainingObjectives`` holds it as
    its ``temperature`` submodule, so the trainer optimises and checkpoints it beside the model.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable: bool = True,
        min_temperature: float = 0.001,
        max_temperature: float = 1.0,
    ):
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(
                f"objectives.itc.temperature must be in [{min_temperature}, {max_temperature}], "
                f"got {temperature}"
            )
        self.min_log_scale = math.log(1.0 / max_temperature)
        self.max_log_scale = math.log(1.0 / min_temperature)
        value = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    @classmethod
    def from_config(cls, cfg: ITCConfig) -> ContrastiveTemperature:
        return cls(cfg.temperature, cfg.learnable_temperature)

    def forward(self) -> Tensor:
        return self.log_scale.clamp(self.min_log_scale, self.max_log_scale).exp()

    @property
    def temperature(self) -> float:
        return 1.0 / self().item()


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0 (sizes may differ), keeping the gradient to each rank's
    own rows. Without an initialised process group (or with one rank) returns ``x``."""
    _, world = rank_and_world_size()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
    parts = all_gather(x)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def multi_positive_nce(
    queries: Tensor, keys: Tensor, query_groups: Tensor, key_groups: Tensor, scale: Tensor
) -> Tensor:
    """Mean over queries of ``-sum_k target[q, k] * log softmax(scale * q . k)``, target uniform over the keys
    of the query's group. A query with no positive key (or a key of group -1) is left out."""
    logits = scale * queries.float() @ keys.float().t()
    positive = (query_groups[:, None] == key_groups[None, :]) & (key_groups[None, :] >= 0)
    counts = positive.sum(1)
    valid = counts > 0
    if not valid.any():
        return zero_loss(logits)
    targets = positive.float() / counts.clamp(min=1)[:, None].float()
    per_query = -(targets * torch.log_softmax(logits, dim=1)).sum(1)
    return per_query[valid].mean()


def contrastive_loss(
    text_emb: Tensor, image_emb: Tensor, text_groups: Tensor, image_groups_: Tensor, scale: Tensor
) -> Tensor:
    """Symmetric InfoNCE: ``(text->image + image->text) / 2``. ``text_emb`` [B, d] and ``image_emb`` [I, d]
    are L2-normalised; ``text_groups`` [B] and ``image_groups_`` [I] say which pairs are positives. Under
    DDP the keys come from every rank (see the module docstring)."""
    all_text, all_image = gather_with_grad(text_emb), gather_with_grad(image_emb)
    all_text_groups, all_image_groups = gather_with_grad(text_groups), gather_with_grad(image_groups_)
    text_to_image = multi_positive_nce(text_emb, all_image, text_groups, all_image_groups, scale)
    image_to_text = multi_positive_nce(image_emb, all_text, image_groups_, all_text_groups, scale)
    return (text_to_image + image_to_text) / 2


def itc_objective(
    model: nn.Module,
    text: TextFeatures,
    images: ImageFeatures,
    batch: Batch,
    temperature: ContrastiveTemperature,
) -> tuple[ObjectiveOutput, Tensor]:
    """The ITC loss of ``batch``'s clean texts and images; also returns the local text->image logits
    [B, I] (detached) for in-batch hard-negative mining."""
    text_emb, image_emb = model.contrastive_embeddings(text, images)
    scale = temperature().to(text_emb.device)
    groups = image_groups(batch.image_index, batch.image_group, image_emb.shape[0])
    loss = contrastive_loss(text_emb, image_emb, batch.image_group, groups, scale)
    with torch.no_grad():
        logits = scale * text_emb.float() @ image_emb.float().t()
        hit = groups[logits.argmax(1)] == batch.image_group
    metrics = {"itc_acc": hit.float().mean().item(), "itc_temperature": 1.0 / scale.item()}
    return ObjectiveOutput(losses={"itc": loss}, metrics=metrics), logits.detach()
