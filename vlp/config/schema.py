"""The config dataclasses, one per section; their fields (with comments) are the configuration reference."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlp.config.checks import INT_GE_0, INT_GE_1, Check, fraction, one_of, width_checks

# --------------------------------------------------------------------------- data

DATA_FORMATS = ("karpathy", "webdataset")
# SemVLP's two ways of fusing text and image: one stream over both, or two streams with cross-attention.
FUSION_MODES = ("single", "two")


@dataclass
class DataConfig:
    """Where the examples come from and how they become batches."""

    # karpathy | webdataset. Pre-training reads image-caption pairs from either.
    format: str = "karpathy"
    # karpathy: the dataset_*.json file; webdataset: a shard path, brace pattern or URL ("pipe:..." too).
    train: str = "runs/shapes/dataset_shapes.json"
    # Where image paths in the annotation files are resolved (karpathy: filepath/filename under it).
    images_root: str = "runs/shapes/images"
    # Optional second annotation set carrying questions (VQAv2 layout) for the SemVLP QA objective:
    # "<questions json>,<annotations json>"; empty for none.
    vqa: str = ""
    # Optional LXMERT-style region-feature tsv: when set, the visual input is regions, not pixels.
    region_features: str = ""
    # A Hugging Face tokenizer directory (vlp data tokenizer writes one).
    tokenizer: str = "runs/shapes/tokenizer"
    # Side of the model's input images. Set by load_config from model.vision.image_size (the one source):
    # a preset or override that sets it to another value is an error.
    image_size: int = 64
    max_text_len: int = 32
    batch_size: int = 32
    num_workers: int = 0
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    # Horizontal flip during training; when on, "left"/"right" are swapped in the paired text.
    hflip: bool = False
    # Unreadable images / empty captions are skipped and counted; past this fraction the run fails.
    max_bad_fraction: float = 0.05
    # Karpathy split names used for training and validation.
    train_split: str = "train"
    val_split: str = "val"
    # Caps (0 = no cap) for quick runs.
    max_train_images: int = 0
    max_val_images: int = 256

    def checks(self) -> list[Check]:
        return [
            one_of(self.format, DATA_FORMATS, "format"),
            (self.image_size >= 1, "image_size", INT_GE_1),
            (self.max_text_len >= 2, "max_text_len", "an integer >= 2 ([CLS] and [SEP])"),
            (self.batch_size >= 1, "batch_size", INT_GE_1),
            (self.num_workers >= 0, "num_workers", INT_GE_0),
            fraction(self.mlm_probability, "mlm_probability"),
            fraction(self.max_bad_fraction, "max_bad_fraction"),
            (self.max_train_images >= 0, "max_train_images", "an integer >= 0 (0 = no cap)"),
            (self.max_val_images >= 0, "max_val_images", "an integer >= 0 (0 = no cap)"),
        ]


# --------------------------------------------------------------------------- model


@dataclass
class TextEncoderConfig:
    """A BERT/RoBERTa text encoder: from a local Hugging Face directory, or from scratch."""

    pretrained: str = ""  # local directory; empty = build from the fields below
    kind: str = "bert"  # bert | roberta (ignored when pretrained is set: the directory says)
    vocab_size: int = 0  # 0 = take it from the tokenizer
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 64
    dropout: float = 0.0

    def checks(self) -> list[Check]:
        return [
            one_of(self.kind, ("bert", "roberta"), "kind"),
            (self.vocab_size >= 0, "vocab_size", "an integer >= 0 (0 = from the tokenizer)"),
            (self.num_layers >= 1, "num_layers", INT_GE_1),
            (self.max_position_embeddings >= 2, "max_position_embeddings", "an integer >= 2"),
            *width_checks(self),
        ]


@dataclass
class VisionEncoderConfig:
    """A ViT image encoder: HF ViT / CLIP vision / DINOv2 from a local directory, or from scratch."""

    pretrained: str = ""
    kind: str = "vit"  # vit | clip | dinov2
    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    dropout: float = 0.0

    def checks(self) -> list[Check]:
        return [
            one_of(self.kind, ("vit", "clip", "dinov2"), "kind"),
            (self.patch_size >= 1, "patch_size", INT_GE_1),
            (self.image_size >= 1 and self.image_size % max(self.patch_size, 1) == 0, "image_size",
             f"a positive multiple of patch_size ({self.patch_size})"),
            (self.num_layers >= 1, "num_layers", INT_GE_1),
            *width_checks(self),
        ]  # fmt: skip


@dataclass
class ModelConfig:
    arch: str = "vilta"  # vilta | semvlp
    # A vlp checkpoint directory (save_pretrained) to start from, e.g. the output of a text-only MLM
    # stage; modules it does not cover keep their fresh initialisation and are logged.
    init_from: str = ""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    # Fusion (ViLTA) / shared stack (SemVLP) width.
    hidden_size: int = 128
    num_heads: int = 4
    intermediate_size: int = 512
    dropout: float = 0.0
    # ViLTA: co-attention layers per stream.
    num_fusion_layers: int = 2
    # SemVLP: layers of the shared stack, and which of them get cross-attention in two-stream mode
    # (empty = the top half).
    num_layers: int = 4
    cross_attention_layers: list[int] = field(default_factory=list)
    # SemVLP visual input: patches (from pixels) | regions (precomputed features + boxes).
    visual_input: str = "patches"
    region_feature_dim: int = 2048
    # MVM label classification (objectives.mvm.classify_labels): detector object / attribute classes.
    # 0 = from the region-feature file when it has labels (pre-training), else no such head.
    num_region_labels: int = 0
    num_region_attributes: int = 0
    # Contrastive embedding size (ITC).
    itc_dim: int = 64
    # How a sequence becomes one vector for the poolers and the ITC embeddings: "cls" (the first token, as
    # METER/LXMERT do with pretrained encoders) or "mean" (masked mean over tokens). Our choice for the
    # from-scratch tiny presets is "mean": at random initialisation every [CLS] state is nearly the same
    # vector, and ITC/ITM then stay at chance for hundreds of steps.
    pooling: str = "cls"
    # Std of the normal initialisation of the layers built here (ViLTA: fusion layers, projections and
    # poolers; SemVLP: embeddings, stack, cross-attention and poolers; heads keep 0.02).
    # 0.02 is BERT's value, chosen for width 768. A cross-attention sublayer passes the other modality
    # through two projections (value, output), each scaling it by about std * sqrt(width): at width 128
    # and std 0.02 that is 0.05 of the residual, so from scratch the fused states barely depend on the
    # pairing and ITM stays at chance for hundreds of steps. The tiny presets use 0.1 (about 1/sqrt(width)).
    init_std: float = 0.02
    # Answer vocabulary size of the SemVLP pre-training QA head (0 = no QA head). Downstream task heads
    # live with their tasks (vlp.tasks), not here.
    num_answers: int = 0

    def checks(self) -> list[Check]:
        layers = self.num_layers
        return [
            one_of(self.arch, ("vilta", "semvlp"), "arch"),
            (self.num_fusion_layers >= 1, "num_fusion_layers", INT_GE_1),
            (layers >= 1, "num_layers", INT_GE_1),
            (all(0 <= i < layers for i in self.cross_attention_layers), "cross_attention_layers",
             f"layer indices in [0, {layers}) (model.num_layers = {layers})"),
            one_of(self.visual_input, ("patches", "regions"), "visual_input"),
            (self.region_feature_dim >= 1, "region_feature_dim", INT_GE_1),
            (self.num_region_labels >= 0, "num_region_labels", INT_GE_0),
            (self.itc_dim >= 1, "itc_dim", INT_GE_1),
            one_of(self.pooling, ("cls", "mean"), "pooling"),
            (self.init_std > 0, "init_std", "a value > 0"),
            (self.num_answers >= 0, "num_answers", INT_GE_0),
            *width_checks(self),
        ]  # fmt: skip


# --------------------------------------------------------------------------- objectives


@dataclass
class SoftLabelConfig:
    """ViLTA cross-distillation: soft MLM labels from a frozen text-only teacher."""

    enabled: bool = False
    alpha: float = 0.5
    temperature: float = 1.0
    top_k: int = 0  # 0 = the full distribution
    warmup_steps: int = 0  # alpha grows linearly from 0 over these steps
    teacher: str = ""  # a vlp checkpoint / HF directory; empty = the model's text path at initialisation
    # Multiply the soft-label term by temperature**2 (Hinton et al. 2015). Off by default: that factor
    # undoes the 1/T**2 shrinking of the gradient when the *student* is softened too; our student is
    # read at temperature 1 (only the teacher is softened), so its gradient does not shrink with T.
    temperature_squared: bool = False


@dataclass
class SynthesizedNegativeConfig:
    """ViLTA: ITM negatives written by the current language encoder."""

    per_positive: int = 0  # 0 = off
    mask_ratio: float = 0.3
    top_k: int = 20  # 0 = sample from the full distribution
    temperature: float = 1.0
    # content (no specials, punctuation, stop words, single letters) | any (no specials)
    replaceable: str = "content"
    synonym_guard_k: int = 0  # >0: never sample a token the frozen teacher ranks in its top-k
    # Sample with the text path in eval mode (dropout off), restoring its mode afterwards: the negatives
    # come from the language model itself, not from a dropout-perturbed copy of it.
    eval_mode: bool = True
    # Validation reports the share of replacements the teacher ranks in its top-k (synth_plausible):
    # plausible but different words, the negatives ViLTA wants. 0 = off.
    plausible_k: int = 10


@dataclass
class ITMConfig:
    random_negatives: int = 1  # per positive, image or text swapped at random
    # Per positive, sampled from softmax(ITC similarity), same image excluded. Needs the ITC loss on
    # (objectives.weights.itc > 0): untrained ITC projections would make them random negatives.
    hard_negatives: int = 0
    # Weight the cross-entropy so that matches and non-matches count equally whatever the number of
    # negatives per positive (our choice; with one negative per positive it is plain CE). Unbalanced, a
    # model that cannot yet tell pairs apart settles on "never a match" and learns slowly from there.
    balance_classes: bool = True
    synthesized: SynthesizedNegativeConfig = field(default_factory=SynthesizedNegativeConfig)


@dataclass
class ITCConfig:
    temperature: float = 0.07
    learnable_temperature: bool = True


@dataclass
class MVMConfig:
    """SemVLP masked visual modelling."""

    mask_ratio: float = 0.15  # share of each image's real visual tokens replaced by the mask embedding
    loss: str = "smooth_l1"  # feature regression: smooth_l1 | mse
    # Where the regions carry detector labels (data.region_features with object / attribute ids):
    # also classify each masked region's object and attribute, as LXMERT does. The class counts come
    # from the region-feature file unless model.num_region_labels / num_region_attributes are set.
    classify_labels: bool = True


@dataclass
class ModeScheduleConfig:
    """SemVLP: which mode (single / two stream) each step uses."""

    kind: str = "iterative"  # iterative | single | two
    every: int = 1  # iterative: switch mode every k steps
    single_ratio: float = 0.0  # iterative: if > 0, fraction of single-stream steps (overrides every)


@dataclass
class ObjectivesConfig:
    # Loss weights: the trainer knows losses by these names and weights only. 0 = off.
    # text_mlm: plain MLM of the text-only path (text encoder + its own MLM head) on the masked captions.
    # It keeps ViLTA's generator of synthesized negatives a working language model while the encoder
    # trains under the multimodal losses (no other loss reaches that MLM head). The ViLTA presets that
    # synthesize negatives use 0.5, half the fused MLM's weight (see docs/design.md).
    weights: dict[str, float] = field(default_factory=lambda: {"mlm": 1.0, "itm": 1.0, "itc": 0.0})
    soft_labels: SoftLabelConfig = field(default_factory=SoftLabelConfig)
    itm: ITMConfig = field(default_factory=ITMConfig)
    itc: ITCConfig = field(default_factory=ITCConfig)
    mvm: MVMConfig = field(default_factory=MVMConfig)
    mode_schedule: ModeScheduleConfig = field(default_factory=ModeScheduleConfig)
    text_only: bool = False  # text-only MLM stage: train the language encoder and its MLM head alone


# --------------------------------------------------------------------------- downstream tasks


@dataclass
class TaskConfig:
    """Fine-tuning on a downstream task (``vlp finetune TASK``); the command line fills the data fields."""

    name: str = ""  # vqa | gqa | nlvr2 | snli_ve | retrieval (see vlp.tasks.TASKS)
    # The dataset directory as released (--data), its images (--images; empty = DATA/images) and the
    # splits to train on and to select the best checkpoint on (empty = the task's defaults).
    data: str = ""
    images: str = ""
    train_split: str = ""
    val_split: str = ""
    # Answer vocabulary (VQA, GQA): answers that are the chosen answer of at least this many training
    # questions. VQAv2's usual 3,129 answers come from min_answer_count 9 over train+val.
    min_answer_count: int = 1
    # SemVLP only: the mode the shared stack runs in for the task (single | two).
    fusion_mode: str = "single"
    # Baseline: the model never sees the image (its pixels are replaced by zeros), e.g. a question-only
    # VQA model. Stored with the checkpoint, so evaluation and prediction are blind too.
    question_only: bool = False
    # Retrieval: the Karpathy file (--captions; empty = the one dataset_*.json in DATA), and how many ITC
    # candidates per query the ITM head re-ranks (0 = all: the exact cross-encoder ranking).
    captions: str = ""
    rerank_k: int = 128
    # A re-ranked candidate scores ITM positive logit + this x ITC cosine similarity (0: ITM alone).
    rerank_itc_weight: float = 5.0
    # Evaluation during fine-tuning: questions per batch (0 = data.batch_size) and a cap on the val
    # split (0 = all of it).
    eval_batch_size: int = 0
    max_val_examples: int = 0
    # Head warm-up before fine-tuning (LP-FT; vlp/tasks/head_warmup.py): the head alone trains this many
    # epochs on the backbone's frozen features of the training items, head_warmup_batch_size items a step
    # (0: off). Not for retrieval, which fine-tunes the model's own ITC and ITM heads.
    head_warmup_epochs: int = 0
    head_warmup_batch_size: int = 256

    def checks(self) -> list[Check]:
        return [
            (self.min_answer_count >= 1, "min_answer_count", INT_GE_1),
            one_of(self.fusion_mode, FUSION_MODES, "fusion_mode"),
            (self.rerank_k >= 0, "rerank_k", "an integer >= 0 (0 = all)"),
            (self.rerank_itc_weight >= 0, "rerank_itc_weight", "a number >= 0"),
            (self.eval_batch_size >= 0, "eval_batch_size", "an integer >= 0 (0 = data.batch_size)"),
            (self.max_val_examples >= 0, "max_val_examples", "an integer >= 0 (0 = all)"),
            (self.head_warmup_epochs >= 0, "head_warmup_epochs", "an integer >= 0 (0 = off)"),
            (self.head_warmup_batch_size >= 1, "head_warmup_batch_size", INT_GE_1),
        ]


# --------------------------------------------------------------------------- training

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
LR_COMPONENTS = ("encoders", "fusion", "heads")


@dataclass
class TrainConfig:
    seed: int = 0
    max_steps: int = 200
    lr: float = 1e-3
    # Multipliers on lr per parameter group.
    lr_mult_encoders: float = 1.0
    lr_mult_fusion: float = 1.0
    lr_mult_heads: float = 1.0
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 20
    grad_accum: int = 1
    clip_norm: float = 1.0  # 0 = off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA) | auto (bf16 where native: vlp.train.precision)
    fsdp: bool = False
    log_every: int = 10
    val_every: int = 100  # 0 = off
    val_batches: int = 4
    ckpt_every: int = 100  # 0 = only at the end
    keep_checkpoints: int = 2
    progress: bool = True

    def checks(self) -> list[Check]:
        return [
            (self.max_steps >= 1, "max_steps", INT_GE_1),
            (self.lr > 0, "lr", "a positive learning rate"),
            *[(getattr(self, f"lr_mult_{c}") >= 0, f"lr_mult_{c}", "a value >= 0") for c in LR_COMPONENTS],
            (self.weight_decay >= 0, "weight_decay", "a value >= 0"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
             "two numbers [beta1, beta2] in [0, 1)"),
            (self.warmup_steps >= 0, "warmup_steps", INT_GE_0),
            (self.grad_accum >= 1, "grad_accum", INT_GE_1),
            (self.clip_norm >= 0, "clip_norm", "a value >= 0 (0 = off)"),
            one_of(self.precision, PRECISIONS, "precision"),
            (self.log_every >= 1, "log_every", INT_GE_1),
            (self.val_every >= 0, "val_every", "an integer >= 0 (0 = off)"),
            (self.ckpt_every >= 0, "ckpt_every", "an integer >= 0 (0 = only at the end)"),
            (self.keep_checkpoints >= 0, "keep_checkpoints", "an integer >= 0 (0 = keep all)"),
        ]  # fmt: skip


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
