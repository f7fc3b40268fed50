"""The attention a step runs (vlp.models.layers.attend, and the Hugging Face encoders'
``attn_implementation="vlp"``): written out for bf16 / fp16 on the CPU, SDPA elsewhere; the written-out
form equals SDPA in fp32 and changes no loss beyond bf16 rounding. And what ``train.precision=auto``
resolves to."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.data.batch import Batch, VisualInput
from vlp.models import build_model, hf_attention, layers
from vlp.train.precision import NATIVE_BF16_ENV, autocast, resolve_precision

CPU = torch.device("cpu")


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


def _sdpa_math(q, k, v, bias, dropout=0.0, scale=None):
    with sdpa_kernel([SDPBackend.MATH]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=scale)


@pytest.mark.parametrize("mask_shape", [(3, 1, 1, 7), (3, 1, 5, 7)])
def test_written_out_attention_equals_sdpa_in_fp32_with_its_gradients(mask_shape):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, length, 8, requires_grad=True) for length in (5, 7, 7))
    mask = torch.ones(mask_shape, dtype=torch.bool)
    mask[1, ..., -3:] = False
    results = []
    for attention in (layers.explicit_attention, _sdpa_math):
        out = attention(q, k, v, mask, 0.0, 0.3)
        grads = torch.autograd.grad((out * torch.arange(8.0)).sum(), (q, k, v))
        results.append((out, *grads))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_reduced_precision_on_the_cpu_is_written_out_and_fp32_is_sdpa(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "explicit_attention", lambda *args: calls.append("explicit") or args[0])
    q = torch.randn(1, 1, 2, 4)
    layers.attend(q.bfloat16(), q.bfloat16(), q.bfloat16(), None)
    layers.attend(q, q, q, None)
    assert calls == ["explicit"]


def test_written_out_attention_gives_the_math_kernels_loss_and_gradients_within_bf16_rounding(monkeypatch):
    """Both families (vlp's own layers and the Hugging Face encoders of ViLTA) under bf16 autocast: the
    written-out attention against SDPA's math kernel, which reduced-precision CPU steps ran before."""
    for arch in ("vilta", "semvlp"):
        model, batch = _model_and_batch(arch)
        loss, grads = _loss_and_grads(model, batch, autocast(CPU, "bf16"))
        calls: list[torch.dtype] = []

        def math_kernel(*args, calls=calls):
            calls.append(args[0].dtype)
            return _sdpa_math(*args)

        with monkeypatch.context() as patch:
            patch.setattr(layers, "explicit_attention", math_kernel)
            patch.setattr(hf_attention, "explicit_attention", math_kernel)
            math_loss, math_grads = _loss_and_grads(model, batch, autocast(CPU, "bf16"))
        fp32_loss, _ = _loss_and_grads(model, batch, autocast(CPU, "fp32"))
        # every attention call of the model went through the patch: vlp's layers and (ViLTA) HF's
        # ViLTA: text and image encoder layers, then a co-attention layer (self and cross in each stream);
        # SemVLP: its 2 shared layers on the joint sequence (single-stream)
        expected = {"vilta": 1 + 1 + 2 * 2, "semvlp": 2}[arch]
        assert calls == [torch.bfloat16] * expected, arch
        torch.testing.assert_close(loss, math_loss, atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(loss, fp32_loss, atol=2e-2, rtol=2e-2)
        for got, want in zip(grads, math_grads, strict=True):
            torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize(("amx", "avx512_bf16"), [(False, False), (True, False), (False, True)])
def test_auto_is_bf16_on_a_cpu_with_amx_or_avx512_bf16_and_fp32_without(monkeypatch, amx, avx512_bf16):
    monkeypatch.delenv(NATIVE_BF16_ENV)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert resolve_precision("auto", CPU) == ("bf16" if amx or avx512_bf16 else "fp32")
    assert [resolve_precision(name, CPU) for name in ("fp32", "bf16")] == ["fp32", "bf16"]
    with autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu") == (amx or avx512_bf16)


@pytest.mark.parametrize("native", [False, True])
def test_the_environment_overrides_the_detection_and_a_bad_value_is_an_error_naming_it(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setenv(NATIVE_BF16_ENV, "0" if native else "1")
    assert resolve_precision("auto", CPU) == ("fp32" if native else "bf16")
    monkeypatch.setenv(NATIVE_BF16_ENV, "true")
    with pytest.raises(ValueError, match="VLP_NATIVE_BF16='true': expected 1"):
        resolve_precision("auto", CPU)
