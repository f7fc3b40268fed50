"""All pre-training objectives of a step, composed so that nothing is computed twice.

One step, in order (each stage only when an enabled loss needs it; a weight of 0 switches a loss off
and skips its work):

1. synthesized ITM captions: the current language encoder fills masked words (no gradient, its text
   path in eval mode unless ``objectives.itm.synthesized.eval_mode`` is off); the ``text_mlm`` loss keeps
   that generator a language model (``gen_nll`` / ``gen_acc``; on validation also ``synth_plausible``);
2. texts, embedded once in one call: clean captions | synthesized captions | MLM-masked captions;
3. images, embedded once (and once more with MVM's visual mask);
4. ITC on the clean texts and images; its logits also drive in-batch hard-negative mining;
5. the ITM rows (positives, then random / hard / synthesized negatives) fused in one call, reusing the
   image features by index; ITM reads every row, QA the positives;
6. the masked captions fused once with the images: MLM, and MVM when the images are masked too (both
   masks in one pass, LXMERT-style; with MLM off, MVM fuses the clean captions).

``PretrainingObjectives`` is the trainer's step module (``vlp.train.loop.Trainer``): an ``nn.Module``
holding the model (``.model``), the ITC temperature (``.temperature``: a parameter when learnable, so the
optimizer finds it beside the model's own) and the frozen teacher (``.teacher``), so that ``.to(device)``
and DDP/FSDP wrapping cover all of them::

    objectives = PretrainingObjectives(cfg.objectives, model, vocab_mask, mask_token_id=tok.mask_token_id)
    out = objectives(batch, step)        # out.losses by name, out.total weighted with cfg.weights

The teacher (soft labels, synonym guard) and the caption generator run without gradients; the teacher
stays in eval mode whatever ``.train()`` is called with.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vlp.config import ObjectivesConfig
from vlp.data.batch import Batch
from vlp.models.outputs import FusedFeatures, ImageFeatures, TextFeatures
from vlp.objectives.base import LOSS_NAMES, ObjectiveOutput, eval_mode, image_groups
from vlp.objectives.itc import ContrastiveTemperature, itc_objective
from vlp.objectives.itm import itm_objective, pair_rows
from vlp.objectives.mlm import SoftLabels, mlm_objective
from vlp.objectives.mvm import REGRESSION_LOSSES, choose_visual_mask, mvm_objective
from vlp.objectives.negatives import (
    NegativePairs,
    SynthesizedCaptions,
    hard_negatives,
    plausible_share,
    random_negatives,
    synthesize_captions,
    synthesized_negatives,
)
from vlp.objectives.qa import qa_objective
from vlp.objectives.teacher import freeze, load_teacher, teacher_predict
from vlp.objectives.text_mlm import generator_objective, text_mlm_objective

if TYPE_CHECKING:  # vlp.train is not imported at run time: objectives do not depend on the trainer
    from vlp.train.schedules import ModeSchedule


def fuse_rows(
    model: nn.Module, texts: TextFeatures, text_rows: Tensor, images: ImageFeatures, image_rows: Tensor,
    mode: str | None,
) -> FusedFeatures:  # fmt: skip
    """Fuse text ``text_rows[b]`` of ``texts`` with image ``image_rows[b]``, each distinct text passed once
    (what depends on the text alone runs once per text)."""
    distinct, text_index = torch.unique(text_rows, return_inverse=True)
    return model.fuse(texts.rows(distinct), images, image_rows, mode=mode, text_index=text_index)


class PretrainingObjectives(nn.Module):
    """The enabled losses of ``cfg`` for ``model``'s architecture: the trainer's step module.

    ``replaceable_vocab`` (bool [V], :func:`vlp.data.masking.replaceable_vocab_mask`) and ``mask_token_id``
    are needed for synthesized ITM negatives; ``first_word_vocab`` (byte-level BPE tokenizers,
    :func:`vlp.data.masking.first_word_vocab_mask`) is the replaceable vocabulary at a caption's first
    word. ``teacher`` overrides the soft-label teacher (default:
    :func:`vlp.objectives.teacher.load_teacher` from ``cfg.soft_labels.teacher``, i.e. a frozen copy of
    ``model``'s language model taken now). ``mode_schedule`` (SemVLP) picks the fusion mode of each call
    that names none (see :meth:`forward`).

    Submodules: ``model``; ``temperature`` (:class:`ContrastiveTemperature`, None when the ITC loss
    is off); ``teacher`` (frozen, always in eval mode; None when unused). The
    buffer ``replaceable_vocab`` is not persistent. Call as ``objectives(batch, step)`` to get the
    unweighted losses by name, with ``total`` weighted by ``cfg.weights``.
    """

    def __init__(
        self,
        cfg: ObjectivesConfig,
        model: nn.Module,
        replaceable_vocab: Tensor | None = None,
        teacher: nn.Module | None = None,
        *,
        mask_token_id: int | None = None,
        generator: torch.Generator | None = None,
        mode_schedule: ModeSchedule | None = None,
        first_word_vocab: Tensor | None = None,
    ):
        super().__init__()
        unknown = sorted(set(cfg.weights) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"objectives.weights: unknown loss(es) {unknown}; known: {list(LOSS_NAMES)}")
        negative = {name: w for name, w in cfg.weights.items() if w < 0}
        if negative:
            raise ValueError(f"objectives.weights must be >= 0, got {negative}")
        self.cfg = cfg
        self.generator = generator
        self.mode_schedule = mode_schedule
        self._eval_calls = 0  # eval-mode forwards since the last train() / eval(): the schedule's index
        self.weights = {name: w for name, w in cfg.weights.items() if w > 0}
        if cfg.text_only:
            self.weights = {"mlm": cfg.weights.get("mlm", 1.0) or 1.0}
        enabled = self.enabled
        if not enabled:
            raise ValueError("objectives.weights: every loss has weight 0, nothing to train")
        model_cfg = getattr(model, "config", None)
        if "qa" in enabled and not getattr(model_cfg, "num_answers", 0):
            raise ValueError("objectives.weights.qa > 0 needs a QA head: set model.num_answers")
        if "mvm" in enabled and cfg.mvm.loss not in REGRESSION_LOSSES:
            raise ValueError(f"objectives.mvm.loss must be one of {REGRESSION_LOSSES}, got {cfg.mvm.loss!r}")
        if "mvm" in enabled and not 0.0 < cfg.mvm.mask_ratio <= 1.0:
            raise ValueError(f"objectives.mvm.mask_ratio must be in (0, 1], got {cfg.mvm.mask_ratio}")

        itm = cfg.itm
        for name in ("random_negatives", "hard_negatives"):
            if getattr(itm, name) < 0:
                raise ValueError(f"objectives.itm.{name} must be >= 0, got {getattr(itm, name)}")
        synth = itm.synthesized
        self.synthesize = "itm" in enabled and synth.per_positive > 0
        if self.synthesize:
            if replaceable_vocab is None or mask_token_id is None:
                raise ValueError(
                    "objectives.itm.synthesized.per_positive > 0 needs replaceable_vocab and mask_token_id "
                    "(from the tokenizer: vlp.data.masking.replaceable_vocab_mask)"
                )
            if not 0.0 < synth.mask_ratio <= 1.0:
                raise ValueError(
                    f"objectives.itm.synthesized.mask_ratio must be in (0, 1], got {synth.mask_ratio}"
                )
            if synth.temperature <= 0 or synth.top_k < 0 or synth.synonym_guard_k < 0:
                raise ValueError("objectives.itm.synthesized: temperature must be > 0, top_k and k >= 0")
        self.model = model
        self.register_buffer(
            "replaceable_vocab",
            replaceable_vocab.bool() if replaceable_vocab is not None else None,
            persistent=False,
        )
        self.register_buffer(
            "first_word_vocab",
            first_word_vocab.bool() if first_word_vocab is not None else None,
            persistent=False,
        )
        self.mask_token_id = mask_token_id
        self.mine_hard = "itm" in enabled and itm.hard_negatives > 0
        if self.mine_hard and "itc" not in enabled:
            raise ValueError(
                f"objectives.itm.hard_negatives={itm.hard_negatives} mines negatives from the ITC similarity "
                "but objectives.weights.itc is 0, so the ITC projections stay untrained (random 'hard' "
                "negatives): set objectives.weights.itc > 0 or objectives.itm.hard_negatives=0"
            )

        self.temperature = ContrastiveTemperature.from_config(cfg.itc) if "itc" in enabled else None

        use_soft = "mlm" in enabled and cfg.soft_labels.enabled and not cfg.text_only
        use_guard = self.synthesize and synth.synonym_guard_k > 0
        self.plausible_k = synth.plausible_k if self.synthesize else 0
        if synth.plausible_k < 0:
            raise ValueError(f"objectives.itm.synthesized.plausible_k must be >= 0, got {synth.plausible_k}")
        use_teacher = use_soft or use_guard or self.plausible_k > 0
        if use_teacher:
            teacher = freeze(teacher) if teacher is not None else load_teacher(cfg.soft_labels.teacher, model)
        self.teacher = teacher if use_teacher else None
        self.soft_labels = SoftLabels(cfg.soft_labels, self.teacher) if use_soft else None

    # ------------------------------------------------------------------ plumbing

    @property
    def enabled(self) -> list[str]:
        """The losses this object computes, in :data:`LOSS_NAMES` order."""
        return [name for name in LOSS_NAMES if name in self.weights]

    def train(self, mode: bool = True) -> PretrainingObjectives:
        """Train / eval mode for the model and the temperature; the teacher stays in eval mode. Restarts
        the count of eval-mode forwards that the mode schedule reads (see :meth:`forward`)."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        self._eval_calls = 0
        return self

    def _mode(self, step: int, mode: str | None) -> str | None:
        """The fusion mode of this call: ``mode`` if given, else the schedule's (None without one)."""
        if mode is not None or self.mode_schedule is None:
            return mode
        if self.training:
            return self.mode_schedule.mode_at(step)
        index = self._eval_calls
        self._eval_calls += 1
        return self.mode_schedule.mode_at(index)

    # ------------------------------------------------------------------ the step

    def forward(self, batch: Batch, step: int, mode: str | None = None) -> ObjectiveOutput:
        """The losses of ``batch`` at 0-based optimizer step ``step``, weighted (``total``) with
        ``cfg.weights``.

        ``mode`` (SemVLP: "single" or "two") is passed to the model's fusion. When it is None and a mode
        schedule was given, the schedule decides: in training mode the mode of ``step``; in eval mode the
        i-th call since the module was put in eval mode runs in the mode of step i, so a validation pass
        scores both modes in their training proportions.
        """
        mode = self._mode(step, mode)
        return self._losses(self.model, batch, step, mode).weighted(self.weights)

    def _losses(self, model: nn.Module, batch: Batch, step: int, mode: str | None) -> ObjectiveOutput:
        if self.cfg.text_only:
            return text_mlm_objective(model, batch)
        enabled = set(self.enabled)
        out = ObjectiveOutput()
        use_pairs = bool(enabled & {"itm", "qa"})
        use_masked_text = "mlm" in enabled
        use_clean_text = use_pairs or "itc" in enabled or ("mvm" in enabled and not use_masked_text)
        fused_text_masked = use_masked_text or "mvm" in enabled

        # 1. synthesized captions (current language encoder, no gradient)
        captions = self._synthesize(model, batch) if self.synthesize else None
        if captions is not None and self.plausible_k > 0 and not self.training and len(captions) > 0:
            teacher = partial(teacher_predict, self.teacher)
            out.metrics["synth_plausible"] = plausible_share(
                captions, teacher, self.mask_token_id, self.plausible_k
            )

        # 2. every text, in one call: clean | synthesized | masked
        texts, spans = self._embed_texts(model, batch, use_clean_text, captions, use_masked_text)
        clean = texts.rows(spans["clean"]) if "clean" in spans else None
        masked = texts.rows(spans["masked"]) if "masked" in spans else None

        # the generator's own MLM on the masked captions, read off their encoding above where it can be
        if "text_mlm" in enabled or (self.synthesize and not self.training):
            out.update(generator_objective(model, batch, train="text_mlm" in enabled, encoded=masked))

        # 3. images, once (clean where a loss reads clean images; MVM's masked copy)
        use_clean_images = use_pairs or "itc" in enabled or "mvm" not in enabled
        images = model.embed_image(batch.visual) if use_clean_images else None
        visual_mask = masked_images = targets = None
        if "mvm" in enabled:
            with torch.no_grad():
                targets = model.visual_targets(batch.visual)
            maskable = self._maskable(batch, targets.shape[1])
            visual_mask = choose_visual_mask(maskable, self.cfg.mvm.mask_ratio, self.generator)
            masked_images = model.embed_image(batch.visual, visual_mask)

        # 4. ITC, and the similarities that hard negatives are mined from
        itc_logits = None
        if "itc" in enabled:
            itc_out, itc_logits = itc_objective(model, clean, images, batch, self.temperature)
            out.update(itc_out)

        # 5. the fused pairs: ITM rows (and QA) on the clean pairs, and the masked pass (MLM on the masked
        # captions, MVM on the masked images). Where both read the same images (no MVM) they are one fuse
        # call, so that SemVLP's two-stream layers below the cross-attention run once per image, not once
        # per pass.
        pairs = fused = None
        if use_pairs:
            negatives = self._negatives(batch, images, itc_logits, captions) if "itm" in enabled else None
            if negatives is None:
                negatives = NegativePairs.empty(batch.image_index.device)
            text_rows, row_images, labels, sources = pair_rows(batch.size, batch.image_index, negatives)
        if fused_text_masked:
            masked_texts = spans["masked"] if masked is not None else spans["clean"]
            pass_images = masked_images if masked_images is not None else images
        if use_pairs and fused_text_masked and pass_images is images:
            masked_rows = torch.arange(masked_texts.start, masked_texts.stop, device=text_rows.device)
            image_rows = torch.cat([row_images, batch.image_index])
            both = fuse_rows(model, texts, torch.cat([text_rows, masked_rows]), images, image_rows, mode)
            pairs, fused = both.rows(slice(0, len(text_rows))), both.rows(slice(len(text_rows), None))
        else:
            if use_pairs:
                pairs = fuse_rows(model, texts, text_rows, images, row_images, mode)
            if fused_text_masked:
                fused = model.fuse(texts.rows(masked_texts), pass_images, batch.image_index, mode=mode)
        if pairs is not None:
            if "itm" in enabled:
                out.update(itm_objective(model, pairs.pooled, labels, sources, self.cfg.itm.balance_classes))
            if "qa" in enabled:
                out.update(qa_objective(model, pairs.pooled[: batch.size], batch))
        if fused is not None:
            if "mlm" in enabled:
                out.update(mlm_objective(model, fused, batch, self.soft_labels, step))
            if "mvm" in enabled:
                out.update(mvm_objective(model, fused, batch, visual_mask, targets, self.cfg.mvm))
        return out

    # ------------------------------------------------------------------ stages

    def _synthesize(self, model: nn.Module, batch: Batch) -> SynthesizedCaptions:
        synth = self.cfg.itm.synthesized
        guard = partial(teacher_predict, self.teacher) if self.teacher is not None else None
        with eval_mode(model.text_language_model(), synth.eval_mode):
            return synthesize_captions(
                batch.input_ids,
                batch.attention_mask,
                model.text_mlm_logits,
                self.replaceable_vocab,
                self.mask_token_id,
                synth,
                guard=guard,
                generator=self.generator,
                first_word_vocab=self.first_word_vocab,
            )

    @staticmethod
    def _embed_texts(
        model: nn.Module,
        batch: Batch,
        use_clean: bool,
        captions: SynthesizedCaptions | None,
        use_masked: bool,
    ) -> tuple[TextFeatures, dict[str, slice]]:
        """One ``embed_text`` call over the texts needed, in the order clean | synthesized | masked (so
        clean row b is row b and synthesized caption s is row B + s); returns the features and each part's
        rows."""
        parts: list[tuple[str, Tensor, Tensor]] = []
        if use_clean:
            parts.append(("clean", batch.input_ids, batch.attention_mask))
        if captions is not None and len(captions) > 0:
            parts.append(("synthesized", captions.input_ids, captions.attention_mask))
        if use_masked:
            if batch.mlm_input_ids is None:
                raise ValueError("the mlm objective needs batch.mlm_input_ids (MLM masking is off?)")
            parts.append(("masked", batch.mlm_input_ids, batch.attention_mask))
        features = model.embed_text(torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]))
        spans, start = {}, 0
        for name, ids, _ in parts:
            spans[name] = slice(start, start + ids.shape[0])
            start += ids.shape[0]
        return features, spans

    def _negatives(
        self,
        batch: Batch,
        images: ImageFeatures,
        itc_logits: Tensor | None,
        captions: SynthesizedCaptions | None,
    ) -> NegativePairs:
        itm = self.cfg.itm
        groups = image_groups(batch.image_index, batch.image_group, images.hidden.shape[0])
        parts = [
            random_negatives(
                batch.image_group, groups, batch.image_index, itm.random_negatives, self.generator
            )
        ]
        if self.mine_hard and itc_logits is not None:
            parts.append(
                hard_negatives(
                    itc_logits,
                    batch.image_group,
                    groups,
                    batch.image_index,
                    itm.hard_negatives,
                    self.generator,
                )
            )
        if captions is not None:
            parts.append(synthesized_negatives(captions, batch.image_index, batch.size))
        return NegativePairs.cat(parts)

    @staticmethod
    def _maskable(batch: Batch, num_tokens: int) -> Tensor:
        """Bool [I, N]: the visual tokens MVM may mask. The model protocol puts an image [CLS] token first,
        never masked; after it come the patches (all real) or the regions (``visual.region_mask``)."""
        visual = batch.visual
        device = batch.image_index.device
        maskable = torch.ones(visual.num_images, num_tokens, dtype=torch.bool, device=device)
        maskable[:, 0] = False
        if visual.region_mask is not None:
            if visual.region_mask.shape[1] != num_tokens - 1:
                raise ValueError(
                    f"batch.visual.region_mask has {visual.region_mask.shape[1]} regions per image but the "
                    f"model has {num_tokens} visual tokens ([CLS] + regions expected)"
                )
            maskable[:, 1:] = visual.region_mask.bool()
        return maskable
