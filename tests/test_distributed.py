"""The distributed path: two CPU processes (gloo) train the smoke CLIP, each on its own data stream."""

import lightning as L
import pytest
import torch

from cotlab.clip import ShapesCLIP, ShapesCLIPConfig
from cotlab.harness import make_trainer, seed_everything
from cotlab.shapes import ShapesDataModule


class SaveFirstBatch(L.Callback):
    """Each rank saves the images of its first training batch to ``folder/rank{R}.pt``."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            torch.save(batch["image"].cpu(), self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_gives_each_rank_its_own_stream(tmp_path):
    seed_everything(0)
    config = ShapesCLIPConfig.for_profile("smoke", max_steps=2)
    model = ShapesCLIP(config)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer("smoke", max_steps=2, run_dir=tmp_path, name="clip",
                           callbacks=[SaveFirstBatch(tmp_path)], enable_progress_bar=False,
                           accelerator="cpu", devices=2, strategy="ddp_spawn")
    trainer.fit(model, datamodule=ShapesDataModule(batch_size=config.batch_size, seed=0))

    # ddp_spawn trains in child processes and hands rank 0's weights back to this one
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0.shape == rank1.shape == (config.batch_size, 3, 32, 32)
    assert not torch.equal(rank0, rank1)
