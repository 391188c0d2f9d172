"""The distributed path: two CPU processes (gloo, ``ddp_spawn``) train the smoke CLIP, each rank on its
own data stream, and every generator family a few steps, ending with the same weights on both ranks."""

import lightning as L
import pytest
import torch

from cotlab.clip import ShapesCLIP, ShapesCLIPConfig
from cotlab.harness import make_trainer, seed_everything
from cotlab.registry import get_recipe
from cotlab.shapes import ShapesDataModule

TWO_CPU_PROCESSES = dict(enable_progress_bar=False, accelerator="cpu", devices=2, strategy="ddp_spawn")


class SaveRank(L.Callback):
    """Each rank saves its first training batch and, as training ends, its model's state dict to
    ``folder/rank{R}.pt``."""

    def __init__(self, folder):
        self.folder, self.first_batch = folder, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = batch

    def on_train_end(self, trainer, module):
        weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save({"batch": self.first_batch, "weights": weights}, self.folder / f"rank{trainer.global_rank}.pt")


def same(a, b) -> bool:
    """Whether two batches (dicts, lists, tensors, strings …) hold the same values."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_two_process_ddp_gives_each_rank_its_own_stream(tmp_path):
    seed_everything(0)
    config = ShapesCLIPConfig.for_profile("smoke", max_steps=2)
    model = ShapesCLIP(config)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer("smoke", max_steps=2, run_dir=tmp_path, name="clip",
                           callbacks=[SaveRank(tmp_path)], **TWO_CPU_PROCESSES)
    trainer.fit(model, datamodule=ShapesDataModule(batch_size=config.batch_size, seed=0))

    # ddp_spawn trains in child processes and hands rank 0's weights back to this one
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["batch"]["image"] for r in (0, 1))
    assert rank0.shape == rank1.shape == (config.batch_size, 3, 32, 32)
    assert not torch.equal(rank0, rank1)


# a recipe of each generator family: masked AR, linear DiT, next-X, the one-step student, GRPO
@pytest.mark.slow
@pytest.mark.parametrize("name", ["maskgit", "sana", "xar", "sprint", "grpo"])
def test_two_process_ddp_keeps_every_family_in_step(name, tmp_path):
    """Two ranks, each on its own batches, end two steps with the same weights, bit for bit: DDP
    averaged every gradient (and rank 0's buffers reached both)."""
    recipe = get_recipe(name)
    seed_everything(0)
    model = recipe.build("smoke")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = make_trainer("smoke", max_steps=2, run_dir=tmp_path, name=name,
                           callbacks=[SaveRank(tmp_path)], **TWO_CPU_PROCESSES)
    trainer.fit(model, datamodule=recipe.datamodule("smoke", 0))

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert not same(rank0["batch"], rank1["batch"])
    weights0, weights1 = rank0["weights"], rank1["weights"]
    assert weights0.keys() == weights1.keys() == before.keys()
    assert not [k for k in before if not torch.equal(weights0[k], weights1[k])]  # the names of any that differ
    assert any(not torch.equal(weights0[k], before[k]) for k in before)
