"""vlp's two model families side by side with their Hugging Face transformers peers: one full training step.

One script of ~700 lines on purpose: each peer's adapter (inputs, heads, losses) sits beside the others so
that the equal-configuration choices can be read and compared in one place.

One command, one process. Each pair is a vlp model and a peer built at equal sizes from random weights
(configs only, never ``from_pretrained``: no network); their steps are interleaved round-robin (the order
flips every step) so that machine noise hits both alike, and every model gets the same batches::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers.py                    # all pairs, fp32 and bf16
    .venv/bin/python benchmarks/peers.py --pairs lxmert,vilt --dtypes fp32 --steps 50
    .venv/bin/python benchmarks/peers.py --device cuda --readme README.md

Pairs (``--pairs``; "vlp" is the first model, "peer" the second, ratio = peer / vlp):

* ``bridgetower``: ViLTA (vlp's METER-style dual encoder with co-attention fusion) vs
  ``BridgeTowerModel`` with BridgeTower's own MLM head (``BridgeTowerForMaskedLM.mlm_score``, tied to the
  word embeddings) and ITM head (``BridgeTowerITMHead`` on the concatenated pooled [CLS] states, as
  ``BridgeTowerForImageAndTextRetrieval`` builds it).
* ``lxmert``: SemVLP two-stream vs ``LxmertForPreTraining`` (its ``cls`` heads: MLM + "matched" ITM).
* ``vilt``: SemVLP single-stream vs ``ViltForMaskedLM`` (its ``mlm_score`` head) + an ITM head written
  here (``nn.Linear(hidden, 2)`` on ViLT's pooler, the original ViLT ITM head; transformers has none).
* ``vilta-full``: vlp against itself: the plain ViLTA MLM+ITM step ("vlp") vs the full vilta-tiny step
  with both ViLTA objectives, cross-distilled soft MLM labels from the frozen text-only teacher and
  synthesized ITM negatives, plus in-batch hard negatives, ITC and the generator's text MLM ("peer").

Exact settings (defaults): batch 32 image-caption pairs from vlp's shapes world (written to ``--data`` if
absent, 500 images, seed 0), 64x64 images, text <= 32 tokens (``data.max_text_len``), 15% MLM masking by
vlp's own collator; dropout 0 everywhere. Sizes: text encoder 2 layers x 128 hidden (4 heads, FFN 512), ViT
2 x 128 with patch 8 (64 patches + [CLS]), 2 co-attention layers per stream; SemVLP one shared stack of 4
layers x 128 (cross-attention in layers 2 and 3 in two-stream mode). Objectives: plain MLM (one-hot
labels) + binary ITM with one random negative per positive, nothing else (vlp overrides:
``objectives.weights={mlm: 1.0, itm: 1.0}``, ``itm.random_negatives=1``, ``itm.hard_negatives=0``,
``itm.synthesized.per_positive=0``, ``soft_labels.enabled=false``; SemVLP ``mode_schedule.kind=two|single``).
The peers get the same token ids, masks, MLM labels and pixels (each text's own image), and the same
negatives: vlp's ``random_negatives`` (image or text swapped at random) sampled anew each step, then
vlp's ``pair_rows``; their losses are vlp's ``itm_loss`` (class-balanced, i.e. plain CE at 1:1) and
``mlm_loss``, on the masked positions only. AdamW lr 1e-3, betas (0.9, 0.98), weight decay 0.01 with vlp's
no-decay rule (``is_no_decay``), fused kernels on both sides (as vlp's ``build_optimizer``). A timed step
is forward + loss, backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``; fp32, or bf16 autocast
around forward + loss, under the trainer's own context for it (:func:`vlp.train.precision.autocast`). The
step index passed to vlp is 1000 + i, past every objective warm-up (soft-label alpha at its full value).
Median of ``--steps`` timed steps after ``--warmup`` untimed ones; spread is the interquartile range
(and min-max in the JSON). On CUDA the device is synchronised before and after each timed step.

Reported per model: step median (ms), IQR, samples/s (batch / median), trainable parameters (each shared
tensor once; vilta-full's frozen teacher is not counted), and peak step memory: the peak of allocated
memory during one step above what was allocated when it started (parameters, optimizer state and data
of every resident model; gradients are freed by ``zero_grad`` so they count as step memory). On CUDA it
is ``torch.cuda.max_memory_allocated`` (reset before each timed step; the max over the timed steps). On
CPU there is no allocator counter, and process RSS is blind to freed-but-cached memory, so one extra,
untimed step per model runs under ``torch.profiler`` with ``profile_memory=True`` and the peak is the
running sum of its CPU allocation/free events: every byte the torch CPU allocator handed out during the
step, at its highest point (memory outside torch's allocator, e.g. oneDNN scratch, is not seen).

What cannot be matched (differences of architecture, not of settings):

* vlp encodes each distinct image of a batch once and each text once, then gathers them for the pairs
  (ITM rows and the masked MLM pass reuse them); the HF models take one (text, image) pair per row, so
  their whole stack runs on 3 x batch rows (2 x batch ITM rows + batch masked MLM rows, in one call).
  That reuse is part of what is measured. The shapes world has several captions per image, so a batch
  can hold fewer than 32 distinct images (the JSON records the mean).
* BridgeTower: link towers ("add") between the top uni-modal layers and the cross-modal layers, per-layer
  text/image projections; the first uni-modal layers run before fusion (``split_index``); a RoBERTa-style
  text encoder and a CLIP-style vision tower (pre-LN, quick-GELU, heads = hidden / 64 = 2, not 4; FFN 4 x
  128 = 512 as here). ViLTA's cross-attention layers are its own, with the encoders' full outputs as input.
* LXMERT takes region features, not pixels: it gets ``visual_feats`` = the 64 patches of each image,
  flattened (vlp's ``patchify``: 3 x 8 x 8 = 192 values, the input width of vlp's patch embedding), and
  ``visual_pos`` = each patch's box on the 8 x 8 grid, normalised (x1, y1, x2, y2); so 64 visual tokens,
  where SemVLP has 64 patches + an image [CLS]. LXMERT has separate language (2), object (2) and cross (2)
  layers; SemVLP shares one 4-layer stack between the modalities (its cross-attention modules are the
  only two-stream parameters), so LXMERT has more parameters at the same width and depth. LXMERT's ITM
  head reads the text [CLS] pooler only; vlp's reads both pooled streams. Its object-prediction and QA
  heads are switched off (``task_obj_predict=False``, ``task_qa=False``).
* ViLT: single stream like SemVLP-single, with a patch embedding, but its ``visual_embed`` interpolates
  position embeddings per image and samples patches (all 64 kept here: ``max_image_length=-1``); text
  comes first in the joint sequence (SemVLP: image first). Its ITM head is ours (see above).
* Heads: vlp's MLM head is BERT's (dense, GELU, LayerNorm, decoder tied to the word embeddings) as are
  the peers' (BridgeTower built with ``tie_word_embeddings=True``; its default is untied); vlp's pooled
  vector is the concatenation of both streams' poolers, BridgeTower's too, LXMERT's and ViLT's one.
* Attention kernels: each side uses its own implementation (vlp its ``attend``, written out in bf16 on the
  CPU and SDPA otherwise; transformers its default ``attn_implementation``, recorded in the JSON: "eager"
  for all three peers, the written-out form).

Output: a table on stdout, JSON (``--out``, default ``benchmarks/results/peers.json``), and with
``--readme`` the table written between ``<!-- peers-table -->`` and ``<!-- /peers-table -->`` of that
file, if it has both markers (nothing is added otherwise).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from pretrain_step import shapes_data  # the sibling script (run from benchmarks/)
from torch import Tensor, nn

from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.data.build import build_pretrain_loaders
from vlp.data.masking import IGNORE_INDEX
from vlp.data.tokenizer import load_tokenizer
from vlp.files import replace_marked_block
from vlp.models import build_model
from vlp.models.visual import patchify
from vlp.objectives.base import image_groups
from vlp.objectives.itm import itm_loss, pair_rows
from vlp.objectives.mlm import mlm_loss
from vlp.objectives.negatives import random_negatives
from vlp.pretraining_setup import build_objectives
from vlp.train.optim import build_optimizer, is_no_decay
from vlp.train.precision import autocast

# --------------------------------------------------------------------------- settings

IMAGE_SIZE, PATCH_SIZE, HIDDEN, HEADS, FFN = 64, 8, 128, 4, 512
TEXT_LAYERS, VISION_LAYERS, FUSION_LAYERS, SEMVLP_LAYERS = 2, 2, 2, 4
MAX_POSITIONS = 64  # text position table (vlp presets: model.text.max_position_embeddings)
LR, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.98), 0.01
STEP_OFFSET = 1000  # step index passed to vlp: past every objective warm-up

SIZES = {
    "vilta": [
        f"model.text.hidden_size={HIDDEN}",
        f"model.text.num_layers={TEXT_LAYERS}",
        f"model.text.num_heads={HEADS}",
        f"model.text.intermediate_size={FFN}",
        f"model.text.max_position_embeddings={MAX_POSITIONS}",
        f"model.vision.image_size={IMAGE_SIZE}",
        f"model.vision.patch_size={PATCH_SIZE}",
        f"model.vision.hidden_size={HIDDEN}",
        f"model.vision.num_layers={VISION_LAYERS}",
        f"model.vision.num_heads={HEADS}",
        f"model.vision.intermediate_size={FFN}",
        f"model.num_fusion_layers={FUSION_LAYERS}",
    ],
    "semvlp": [
        f"model.num_layers={SEMVLP_LAYERS}",
        "model.cross_attention_layers=[2, 3]",
        "model.visual_input=patches",
        f"model.vision.image_size={IMAGE_SIZE}",
        f"model.vision.patch_size={PATCH_SIZE}",
        f"model.text.max_position_embeddings={MAX_POSITIONS}",
        "data.vqa=",  # no QA objective: no questions needed
    ],
}
COMMON_SIZES = [
    f"model.hidden_size={HIDDEN}",
    f"model.num_heads={HEADS}",
    f"model.intermediate_size={FFN}",
    "model.dropout=0.0",
    f"train.lr={LR}",
    f"train.betas=[{BETAS[0]}, {BETAS[1]}]",
    f"train.weight_decay={WEIGHT_DECAY}",
]
PLAIN_MLM_ITM = [
    "objectives.weights={mlm: 1.0, itm: 1.0}",
    "objectives.itm.random_negatives=1",
    "objectives.itm.hard_negatives=0",
    "objectives.itm.synthesized.per_positive=0",
    "objectives.soft_labels.enabled=false",
]
# (preset, extra overrides) of each vlp model
VLP_MODELS = {
    "ViLTA MLM+ITM": ("vilta-tiny", PLAIN_MLM_ITM),
    "ViLTA full (both objectives)": ("vilta-tiny", []),
    "SemVLP two-stream": ("semvlp-tiny", [*PLAIN_MLM_ITM, "objectives.mode_schedule.kind=two"]),
    "SemVLP single-stream": ("semvlp-tiny", [*PLAIN_MLM_ITM, "objectives.mode_schedule.kind=single"]),
}
# pair -> (vlp model, peer model); the peer of vilta-full is a vlp model too
PAIRS = {
    "bridgetower": ("ViLTA MLM+ITM", "BridgeTower MLM+ITM"),
    "lxmert": ("SemVLP two-stream", "LXMERT MLM+ITM"),
    "vilt": ("SemVLP single-stream", "ViLT MLM+ITM"),
    "vilta-full": ("ViLTA MLM+ITM", "ViLTA full (both objectives)"),
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------- the peers


class Peer(nn.Module):
    """A transformers model + MLM and ITM heads, run on (text, image) rows: ``rows(ids, mask, pixels)``
    returns the final text states [N, L, D] and the pooled pair vectors [N, P]."""

    def rows(self, input_ids: Tensor, attention_mask: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def mlm(self, states: Tensor) -> Tensor:
        raise NotImplementedError

    def itm(self, pooled: Tensor) -> Tensor:
        raise NotImplementedError


class BridgeTowerPeer(Peer):
    def __init__(self, vocab_size: int, pad_token_id: int):
        super().__init__()
        from transformers import BridgeTowerConfig, BridgeTowerForMaskedLM
        from transformers.models.bridgetower.modeling_bridgetower import BridgeTowerITMHead

        text = dict(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            # RoBERTa positions start after the padding index
            max_position_embeddings=MAX_POSITIONS + pad_token_id + 2,
            pad_token_id=pad_token_id,
        )
        vision = dict(
            hidden_size=HIDDEN,
            num_hidden_layers=VISION_LAYERS,
            patch_size=PATCH_SIZE,
            image_size=IMAGE_SIZE,
        )
        config = BridgeTowerConfig(
            text_config=text,
            vision_config=vision,
            hidden_size=HIDDEN,
            num_hidden_layers=FUSION_LAYERS,
            num_attention_heads=HEADS,
            tie_word_embeddings=True,  # as vlp, LXMERT and ViLT (BridgeTower's default is untied)
        )
        self.model = BridgeTowerForMaskedLM(config)
        self.itm_score = BridgeTowerITMHead(2 * HIDDEN)
        self.config = config

    def rows(self, input_ids, attention_mask, pixels):
        out = self.model.bridgetower(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixels)
        return out.text_features, out.pooler_output

    def mlm(self, states):
        return self.model.mlm_score(states)

    def itm(self, pooled):
        return self.itm_score(pooled)


class LxmertPeer(Peer):
    def __init__(self, vocab_size: int, pad_token_id: int):
        super().__init__()
        from transformers import LxmertConfig, LxmertForPreTraining

        config = LxmertConfig(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=MAX_POSITIONS,
            l_layers=SEMVLP_LAYERS // 2,
            r_layers=SEMVLP_LAYERS // 2,
            x_layers=SEMVLP_LAYERS // 2,
            visual_feat_dim=3 * PATCH_SIZE**2,
            task_obj_predict=False,
            task_qa=False,
            pad_token_id=pad_token_id,
        )
        self.model = LxmertForPreTraining(config)
        self.config = config
        grid = IMAGE_SIZE // PATCH_SIZE
        r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        boxes = torch.stack([c, r, c + 1, r + 1], dim=-1).reshape(-1, 4).float() / grid
        self.register_buffer("boxes", boxes, persistent=False)  # [64, 4]: each patch's box

    def rows(self, input_ids, attention_mask, pixels):
        feats = patchify(pixels, PATCH_SIZE)
        pos = self.boxes.expand(feats.shape[0], -1, -1)
        out = self.model.lxmert(
            input_ids=input_ids, visual_feats=feats, visual_pos=pos, attention_mask=attention_mask
        )
        return out.language_output, out.pooled_output

    def mlm(self, states):
        return self.model.cls.predictions(states)

    def itm(self, pooled):
        return self.model.cls.seq_relationship(pooled)


class ViltPeer(Peer):
    def __init__(self, vocab_size: int, pad_token_id: int):
        super().__init__()
        from transformers import ViltConfig, ViltForMaskedLM

        config = ViltConfig(
            vocab_size=vocab_size,
            hidden_size=HIDDEN,
            num_hidden_layers=SEMVLP_LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=MAX_POSITIONS,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            max_image_length=-1,  # keep all 64 patches
            pad_token_id=pad_token_id,
        )
        self.model = ViltForMaskedLM(config)
        self.itm_score = nn.Linear(HIDDEN, 2)  # ViLT's ITM head; transformers has none
        self.config = config

    def rows(self, input_ids, attention_mask, pixels):
        pixel_mask = torch.ones(
            pixels.shape[0], pixels.shape[2], pixels.shape[3], dtype=torch.long, device=pixels.device
        )
        out = self.model.vilt(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixels, pixel_mask=pixel_mask
        )
        return out.last_hidden_state[:, : input_ids.shape[1]], out.pooler_output

    def mlm(self, states):
        return self.model.mlm_score(states)

    def itm(self, pooled):
        return self.itm_score(pooled)


PEERS: dict[str, Callable[[int, int], Peer]] = {
    "BridgeTower MLM+ITM": BridgeTowerPeer,
    "LXMERT MLM+ITM": LxmertPeer,
    "ViLT MLM+ITM": ViltPeer,
}


def peer_loss(peer: Peer, batch: Batch) -> Tensor:
    """MLM + ITM of ``peer`` on ``batch``, the same rows as vlp's step: the positives, one random negative
    each (vlp's sampler), and the masked captions with their own images, all in one call."""
    groups = image_groups(batch.image_index, batch.image_group, batch.visual.num_images)
    negatives = random_negatives(batch.image_group, groups, batch.image_index, 1)
    text_rows, row_images, labels, sources = pair_rows(batch.size, batch.image_index, negatives)
    itm_rows = text_rows.shape[0]
    input_ids = torch.cat([batch.input_ids[text_rows], batch.mlm_input_ids])
    attention_mask = torch.cat([batch.attention_mask[text_rows], batch.attention_mask]).long()
    pixels = batch.visual.pixel_values[torch.cat([row_images, batch.image_index])]
    states, pooled = peer.rows(input_ids, attention_mask, pixels)
    itm, _ = itm_loss(peer.itm(pooled[:itm_rows]), labels, sources, balance_classes=True)
    positions = batch.mlm_labels != IGNORE_INDEX
    mlm = mlm_loss(peer.mlm(states[itm_rows:][positions]), batch.mlm_labels[positions])
    return mlm + itm


def peer_optimizer(peer: nn.Module, device: torch.device) -> torch.optim.AdamW:
    """AdamW with vlp's hyper-parameters and no-decay rule; fused kernels as vlp's ``build_optimizer``."""
    named = [(n, p) for n, p in peer.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not is_no_decay(n, p)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if is_no_decay(n, p)], "weight_decay": 0.0},
    ]
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=fused or None)


# --------------------------------------------------------------------------- models under test


@dataclass
class Runner:
    """One model under test: ``loss(batch, step)``, its optimizer and what was measured."""

    name: str
    module: nn.Module
    loss: Callable[[Batch, int], Tensor]
    optimizer: torch.optim.Optimizer
    params: int
    times: list[float] = field(default_factory=list)
    peak_bytes: int | None = None


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)  # shared tensors once


def vlp_overrides(preset: str, extra: list[str], data_args: list[str]) -> list[str]:
    family = "semvlp" if preset.startswith("semvlp") else "vilta"
    return [*data_args, *COMMON_SIZES, *SIZES[family], *extra]


def build_vlp(name: str, data_args: list[str], tokenizer, device: torch.device, seed: int) -> Runner:
    preset, extra = VLP_MODELS[name]
    config = load_config(preset, vlp_overrides(preset, extra, data_args))
    torch.manual_seed(seed)
    model = build_model(config.model, vocab_size=len(tokenizer))
    objectives = build_objectives(config, model, tokenizer).to(device)
    objectives.train()
    optimizer = build_optimizer(objectives, config.train)

    def loss(batch: Batch, step: int) -> Tensor:
        return objectives(batch, STEP_OFFSET + step).total

    return Runner(name, objectives, loss, optimizer, trainable_parameters(objectives))


def build_peer(name: str, tokenizer, device: torch.device, seed: int) -> Runner:
    torch.manual_seed(seed)
    peer = PEERS[name](len(tokenizer), tokenizer.pad_token_id).to(device)
    peer.train()
    return Runner(
        name,
        peer,
        lambda batch, step: peer_loss(peer, batch),
        peer_optimizer(peer, device),
        trainable_parameters(peer),
    )


def build(name: str, data_args: list[str], tokenizer, device: torch.device, seed: int) -> Runner:
    if name in VLP_MODELS:
        return build_vlp(name, data_args, tokenizer, device, seed)
    return build_peer(name, tokenizer, device, seed)


# --------------------------------------------------------------------------- timing and memory


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """The trainer's context for the step's precision (autocast and the attention kernels it picks)."""
    return autocast(device, "bf16" if dtype == torch.bfloat16 else "fp32")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(runner: Runner, batch: Batch, step: int, device: torch.device, dtype) -> None:
    with _autocast(device, dtype):
        loss = runner.loss(batch, step)
    loss.backward()
    runner.optimizer.step()
    runner.optimizer.zero_grad(set_to_none=True)


def timed_step(runner: Runner, batch: Batch, step: int, device: torch.device, dtype, record: bool) -> None:
    cuda = device.type == "cuda"
    _sync(device)
    if cuda:
        start_bytes = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train_step(runner, batch, step, device, dtype)
    _sync(device)
    elapsed = time.perf_counter() - start
    if record:
        runner.times.append(elapsed)
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) - start_bytes
            runner.peak_bytes = max(runner.peak_bytes or 0, peak)


def cpu_peak_bytes(runner: Runner, batch: Batch, step: int, device: torch.device, dtype) -> int | None:
    """Peak of the torch CPU allocator's running total during one (untimed) step, from the profiler's
    memory events (see the module docstring); None where the profiler does not expose them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(runner, batch, step, device, dtype)
    try:
        events = [
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        ]
    except (AttributeError, RuntimeError):
        return None
    total = peak = 0
    for _, nbytes in sorted(events):
        total += nbytes
        peak = max(peak, total)
    return peak


def run_pair(
    pair: str, dtype_name: str, batches: list[Batch], args, data_args, tokenizer, device
) -> list[Runner]:
    dtype = DTYPES[dtype_name]
    runners = [build(name, data_args, tokenizer, device, args.seed) for name in PAIRS[pair]]
    for i, batch in enumerate(batches):
        order = runners if i % 2 == 0 else runners[::-1]  # flip the order every step
        for runner in order:
            timed_step(runner, batch, i, device, dtype, record=i >= args.warmup)
    if device.type == "cpu":
        for runner in runners:
            runner.peak_bytes = cpu_peak_bytes(runner, batches[0], len(batches), device, dtype)
    return runners


def summary(runner: Runner, batch_size: int) -> dict:
    ms = sorted(t * 1000 for t in runner.times)
    median = statistics.median(ms)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0],) * 3
    return {
        "model": runner.name,
        "median_ms": median,
        "q1_ms": q1,
        "q3_ms": q3,
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "samples_per_s": batch_size / (median / 1000),
        "parameters": runner.params,
        "peak_step_mib": None if runner.peak_bytes is None else runner.peak_bytes / 2**20,
        "times_ms": [t * 1000 for t in runner.times],
    }


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        for side, m in (("vlp", r["vlp"]), ("peer", r["peer"])):
            rows.append(
                [
                    r["pair"],
                    r["dtype"],
                    f"{side}: {m['model']}",
                    f"{m['median_ms']:.1f}",
                    f"{m['q1_ms']:.1f}-{m['q3_ms']:.1f}",
                    f"{m['samples_per_s']:.0f}",
                    f"{m['parameters'] / 1e6:.2f}M",
                    _fmt(m["peak_step_mib"], ".0f"),
                    f"{r['ratio']['time']:.2f}" if side == "peer" else "1.00",
                ]
            )
    return rows


HEADER = ["pair", "dtype", "model", "step ms", "IQR ms", "samples/s", "params", "peak MiB", "peer/vlp"]


def text_table(results: list[dict]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[dict], settings: dict) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(HEADER) - 3)) + "|",
        *("| " + " | ".join(row) + " |" for row in table_rows(results)),
        "",
        f"`benchmarks/peers.py`, {settings['device']} ({settings['threads']} threads), batch "
        f"{settings['batch_size']}, median of {settings['steps']} steps after {settings['warmup']} warm-up; "
        f"torch {settings['torch']}, transformers {settings['transformers']}. "
        f"Peak MiB: {settings['memory']}.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _csv(value: str, options) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in options]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(options)}; got {value!r}"
        )
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=lambda v: _csv(v, PAIRS), default=list(PAIRS), help=", ".join(PAIRS))
    parser.add_argument("--dtypes", type=lambda v: _csv(v, DTYPES), default=list(DTYPES), help="fp32, bf16")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (| cuda:N)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="runs/shapes", help="shapes world directory (written if absent)")
    parser.add_argument("--out", default="benchmarks/results/peers.json")
    parser.add_argument("--readme", default="", help="write the table between the peers-table markers")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    data_args = shapes_data(Path(args.data), args.batch_size)
    config = load_config("vilta-tiny", vlp_overrides("vilta-tiny", PLAIN_MLM_ITM, data_args))
    tokenizer = load_tokenizer(config.data.tokenizer)
    loader = build_pretrain_loaders(config.data, tokenizer, seed=args.seed).train
    batches: list[Batch] = []
    while len(batches) < args.warmup + args.steps:
        for batch in loader:
            batches.append(batch.to(device))
            if len(batches) == args.warmup + args.steps:
                break

    memory = (
        "torch.cuda.max_memory_allocated above the step's start"
        if device.type == "cuda"
        else "torch CPU allocator peak above the step's start (torch.profiler memory events, one "
        "untimed step)"
    )
    settings = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
        "max_text_len": config.data.max_text_len,
        "mean_tokens": statistics.mean(b.input_ids.shape[1] for b in batches),
        "mean_distinct_images": statistics.mean(b.visual.num_images for b in batches),
        "vocab_size": len(tokenizer),
        "memory": memory,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "vlp_overrides": {name: vlp_overrides(p, e, data_args) for name, (p, e) in VLP_MODELS.items()},
    }
    print(
        f"{settings['device']}, {settings['threads']} threads, batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup} warm-up; text <= {settings['max_text_len']} tokens "
        f"(mean padded length {settings['mean_tokens']:.1f}), "
        f"{settings['mean_distinct_images']:.1f} distinct images per batch",
        flush=True,
    )

    results = []
    for pair in args.pairs:
        for dtype_name in args.dtypes:
            runners = run_pair(pair, dtype_name, batches, args, data_args, tokenizer, device)
            vlp, peer = (summary(r, args.batch_size) for r in runners)
            mem = None
            if vlp["peak_step_mib"] and peer["peak_step_mib"] is not None:
                mem = peer["peak_step_mib"] / vlp["peak_step_mib"]
            ratio = {
                "time": peer["median_ms"] / vlp["median_ms"],
                "parameters": peer["parameters"] / vlp["parameters"],
                "peak_memory": mem,
            }
            attn = getattr(getattr(runners[1].module, "config", None), "_attn_implementation", None)
            results.append(
                {
                    "pair": pair,
                    "dtype": dtype_name,
                    "vlp": vlp,
                    "peer": peer,
                    "ratio": ratio,
                    "peer_attn": attn,
                }
            )
            print(
                f"  {pair} {dtype_name}: {vlp['model']} {vlp['median_ms']:.1f} ms, "
                f"{peer['model']} {peer['median_ms']:.1f} ms ({ratio['time']:.2f}x)",
                flush=True,
            )

    print()
    print(text_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "results": results}, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    if args.readme:
        replace_marked_block(args.readme, "peers-table", markdown_table(results, settings))
        print(f"wrote the table into {args.readme}")


if __name__ == "__main__":
    main()
