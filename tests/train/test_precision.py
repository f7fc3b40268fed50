"""The attention kernels a step runs under (vlp.train.precision): the math kernel for bf16 / fp16 autocast
on the CPU, PyTorch's choice elsewhere; and the choice changes no loss beyond bf16 rounding."""

import torch
from torch.nn.attention import SDPBackend

from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.data.batch import Batch, VisualInput
from vlp.models import build_model
from vlp.train.precision import attention_backends, autocast

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_math_kernel_only_for_reduced_precision_on_the_cpu():
    assert attention_backends(CPU, "bf16") == [SDPBackend.MATH]
    assert attention_backends(CPU, "fp16") == [SDPBackend.MATH]
    assert attention_backends(CPU, "fp32") is None
    assert attention_backends(CUDA, "bf16") is None


def _model_and_batch(arch: str):
    torch.manual_seed(0)
    width = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    cfg = ModelConfig(
        arch=arch,
        text=TextEncoderConfig(**width, max_position_embeddings=16),
        vision=VisionEncoderConfig(image_size=16, patch_size=8, **width),
        hidden_size=32, num_heads=2, intermediate_size=64, num_fusion_layers=1, num_layers=2, itc_dim=8,
    )  # fmt: skip
    model = build_model(cfg, vocab_size=40).eval()
    ids = torch.randint(5, 40, (4, 8))
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[1, -3:] = False
    batch = Batch(
        visual=VisualInput(pixel_values=torch.randn(2, 3, 16, 16)),
        image_index=torch.tensor([0, 0, 1, 1]),
        image_group=torch.tensor([0, 0, 1, 1]),
        input_ids=ids,
        attention_mask=mask,
    )
    return model, batch


def _loss_and_grads(model, batch, context) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    with context:
        text = model.embed_text(batch.input_ids, batch.attention_mask)
        fused = model.fuse(text, model.embed_image(batch.visual), batch.image_index)
        loss = model.heads.itm(fused.pooled).float().logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_the_math_kernel_gives_the_default_kernels_loss_and_gradients_within_bf16_rounding():
    for arch in ("vilta", "semvlp"):
        model, batch = _model_and_batch(arch)
        default = torch.autocast("cpu", dtype=torch.bfloat16)
        loss, grads = _loss_and_grads(model, batch, default)
        math_loss, math_grads = _loss_and_grads(model, batch, autocast(CPU, "bf16"))
        torch.testing.assert_close(math_loss, loss, atol=2e-2, rtol=2e-2)
        for got, want in zip(math_grads, grads, strict=True):
            torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)
