"""ITC under torch.distributed: two gloo ranks give the single-process loss and gradients."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vlp.objectives.itc import contrastive_loss, gather_with_grad
from vlp.train.distributed import cleanup

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(3)
    text = F.normalize(torch.randn(8, 5, generator=g), dim=-1)
    image = F.normalize(torch.randn(6, 5, generator=g), dim=-1)
    # 4 texts and 3 images per rank; image 1 has two texts on rank 0, group 7 appears on both ranks
    text_groups = torch.tensor([7, 3, 3, 4, 5, 6, 6, 7])
    image_groups = torch.tensor([7, 3, 4, 5, 6, 7])
    return text, image, text_groups, image_groups


def _compute_and_save(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    text, image, text_groups, image_groups = _data()
    t = text[4 * rank : 4 * rank + 4].clone().requires_grad_(True)
    i = image[3 * rank : 3 * rank + 3].clone().requires_grad_(True)
    loss = contrastive_loss(
        t, i, text_groups[4 * rank : 4 * rank + 4], image_groups[3 * rank : 3 * rank + 3], 5.0
    )
    loss.backward()
    ragged = gather_with_grad(torch.full((rank + 1, 2), float(rank)))  # sizes 1 and 2
    torch.save(
        {"loss": loss.detach(), "t": t.grad, "i": i.grad, "ragged": ragged.detach()}, f"{out_dir}/{rank}.pt"
    )


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        # in its own frame, so that no autograd graph of a collective outlives the process group
        _compute_and_save(rank, out_dir)
    finally:
        cleanup()


def test_gathered_itc_equals_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD)]
    text, image, text_groups, image_groups = _data()
    text.requires_grad_(True)
    image.requires_grad_(True)
    full = contrastive_loss(text, image, text_groups, image_groups, 5.0)
    full.backward()
    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert torch.allclose(mean_loss, full.detach(), atol=1e-6)
    # DDP averages parameter gradients over ranks: each rank's gradient / WORLD is the global one
    rank_text_grads = torch.cat([r["t"] for r in results]) / WORLD
    rank_image_grads = torch.cat([r["i"] for r in results]) / WORLD
    assert torch.allclose(rank_text_grads, text.grad, atol=1e-6)
    assert torch.allclose(rank_image_grads, image.grad, atol=1e-6)
    expected_ragged = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    for r in results:
        assert torch.equal(r["ragged"], expected_ragged)
