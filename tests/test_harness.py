"""Harness: atomic files, run folders, checkpoints, the Trainer and train()."""

import json
import math
import shutil
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cotlab import harness, io, registry
from cotlab.errors import CotlabError
from cotlab.harness import (Recipe, checkpoint_card, checkpoint_history, load_checkpoint, load_or_train,
                            make_trainer, save_checkpoint, train)
from cotlab.profiles import ProfileConfig


@dataclass
class TinyConfig(ProfileConfig):
    width: int = 4
    max_steps: int = 2
    PROFILES: ClassVar[dict[str, dict]] = {"smoke": {"width": 3}}


class TinyModel(L.LightningModule):
    """A linear regression, standing in for a real model."""

    Config = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.net = nn.Linear(config.width, 1)
        self.register_buffer("calls", torch.zeros(()))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyData(L.LightningDataModule):
    def __init__(self, width: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(32, width, generator=g)
        self.data = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=8)


TINY_RECIPE = Recipe(
    name="tiny",
    build=lambda profile: TinyModel(TinyConfig.for_profile(profile)),
    datamodule=lambda profile, seed: TinyData(TinyConfig.for_profile(profile).width, seed),
    evaluate=lambda model, profile: {"score": 0.5},
    description="a stand-in",
)


def test_atomic_writes_leave_no_temp_files(tmp_path):
    io.atomic_write_text(tmp_path / "a" / "x.txt", "one")
    io.atomic_write_text(tmp_path / "a" / "x.txt", "two")
    io.atomic_write_json(tmp_path / "a" / "y.json", {"t": torch.tensor(1.5), "p": tmp_path})
    assert (tmp_path / "a" / "x.txt").read_text() == "two"
    assert json.loads((tmp_path / "a" / "y.json").read_text()) == {"t": 1.5, "p": str(tmp_path)}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.txt", "y.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = io.atomic_write_text(tmp_path / "x.txt", "old")
    with pytest.raises(TypeError):
        io.atomic_write_json(path, {"bad": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_new_run_dir_never_returns_an_existing_folder(tmp_path):
    dirs = [io.new_run_dir(tmp_path, "run") for _ in range(3)]
    assert [d.name for d in dirs] == ["run", "run-2", "run-3"]
    assert all(d.is_dir() for d in dirs)


def test_write_metrics_merges(tmp_path):
    io.write_metrics(tmp_path, {"loss": 1.0, "geneval": {"overall": 0.5}})
    io.write_metrics(tmp_path, {"loss": 0.5, "steps": 3})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "loss": 0.5, "geneval": {"overall": 0.5}, "steps": 3}


def test_checkpoint_round_trip(tmp_path):
    model = TinyModel(TinyConfig(width=5))
    folder = save_checkpoint(model, tmp_path / "ckpt", name="tiny", profile="smoke", command="cotlab train tiny",
                             train_seconds=12.0, steps=2, metrics={"score": 0.25})
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "card.json", "config.json",
                                                        "model.safetensors"]
    loaded = load_checkpoint(folder)
    assert type(loaded) is TinyModel and loaded.config == model.config and not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():  # stored in float16, loaded back as float32
        assert loaded.state_dict()[key].dtype == value.dtype
        assert torch.equal(loaded.state_dict()[key], value.half().to(value.dtype))
    card = checkpoint_card(folder)
    assert card["steps"] == 2 and card["metrics"] == {"score": 0.25} and card["profile"] == "smoke"
    assert card["commit"] and card["date"].endswith("Z")
    text = (folder / "MODEL_CARD.md").read_text()
    assert "cotlab train tiny" in text and "| score | 0.25 |" in text
    assert checkpoint_history(folder) == {}  # saved without a history


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^no checkpoint 'nosuch' at .*nosuch — "
                                                r"train it with: cotlab train nosuch --profile cpu --ship$"):
        load_checkpoint("nosuch")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "empty")


def test_make_trainer_picks_the_device_and_fits(tmp_path):
    trainer = make_trainer("smoke", max_steps=2, run_dir=tmp_path, name="tiny")
    expected = CUDAAccelerator if torch.cuda.is_available() else CPUAccelerator
    assert isinstance(trainer.accelerator, expected)
    trainer.fit(TinyModel(TinyConfig()), datamodule=TinyData(4, seed=0))
    assert trainer.global_step == 2
    assert (tmp_path / "tiny" / "version_0" / "metrics.csv").exists()


@pytest.fixture
def tiny_registered(monkeypatch, tmp_path):
    """Register the tiny recipe, with runs and data in tmp_path."""
    monkeypatch.setitem(registry.RECIPES, "tiny", f"{__name__}:TINY_RECIPE")
    monkeypatch.setattr(harness, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(harness, "DATA_DIR", tmp_path / "data")


def test_train_saves_a_run_then_ships(tiny_registered, tmp_path):
    model, metrics, folder = train("tiny", "smoke", seed=1)
    assert folder.parent == tmp_path / "runs" / "train" and folder.name.startswith("tiny-smoke-")
    assert metrics["score"] == 0.5 and "train_loss" in metrics
    assert checkpoint_card(folder)["steps"] == 2 and model.config.width == 3
    history = checkpoint_history(folder)  # what the trainer logged, step by step
    assert history["train_loss"][-1][0] == 1  # the last of the 2 steps

    for _ in range(2):  # shipping again replaces the folder
        _, _, shipped = train("tiny", "smoke", ship=True)
    assert shipped == tmp_path / "data" / "checkpoints" / "tiny"
    assert checkpoint_card("tiny")["command"] == "cotlab train tiny --profile smoke --seed 0 --ship"
    assert [p.name for p in shipped.parent.iterdir()] == ["tiny"]  # no temp folders left
    assert load_checkpoint("tiny").config.width == 3


def test_train_refuses_a_used_out_folder(tiny_registered, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(CotlabError, match="not empty"):
        train("tiny", "smoke", out=tmp_path / "used")
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"


def test_load_or_train_loads_the_shipped_else_trains(tiny_registered, tmp_path, capsys):
    runs = tmp_path / "runs" / "train"
    model, folder = load_or_train("tiny", "smoke")  # nothing shipped: trained now, into runs/train
    assert "training it now" in capsys.readouterr().out
    assert model.config.width == 3 and folder.parent == runs and checkpoint_history(folder)["train_loss"]
    train("tiny", "smoke", ship=True)
    trained = len(list(runs.iterdir()))
    model, folder = load_or_train("tiny", "smoke")  # shipped: loaded, not trained again
    assert type(model) is TinyModel and folder == tmp_path / "data" / "checkpoints" / "tiny"
    assert len(list(runs.iterdir())) == trained
    _, folder = load_or_train("tiny", "smoke", use_pretrained=False)  # asked to train: trains
    assert folder.parent == runs and len(list(runs.iterdir())) == trained + 1


def test_evaluate_checkpoint_remeasures_and_keeps_the_training_facts(tiny_registered, tmp_path, monkeypatch):
    import dataclasses
    import sys

    from cotlab.cli import main
    from cotlab.harness import evaluate_checkpoint

    _, _, folder = train("tiny", "smoke", ship=True)
    before = checkpoint_card("tiny")
    remeasured = dataclasses.replace(TINY_RECIPE, evaluate=lambda model, profile: {"score": 0.75})
    monkeypatch.setattr(sys.modules[__name__], "TINY_RECIPE", remeasured)
    assert evaluate_checkpoint("tiny") == {"score": 0.75}
    after = checkpoint_card("tiny")
    assert after["metrics"] == {**before["metrics"], "score": 0.75}
    assert {k: after[k] for k in before if k != "metrics"} == {k: v for k, v in before.items() if k != "metrics"}
    assert after["evaluated"]["command"] == "cotlab evaluate tiny"
    assert "| metrics measured |" in (folder / "MODEL_CARD.md").read_text()
    assert main(["evaluate", "tiny"]) == 0
    assert main(["evaluate", str(tmp_path / "nowhere")]) != 0  # a missing checkpoint: a one-line error


# --- the Model base every workbook model builds on -----------------------------------------------
@dataclass
class BaseConfig(ProfileConfig):
    lr: float = 0.1
    weight_decay: float = 0.5
    warmup_steps: int = 2
    max_steps: int = 10
    tokenizer: str = "vq_f8"


class Regression(harness.Model):
    Config = BaseConfig
    PROGRESS = ("err",)

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Linear(3, 1)

    def loss(self, batch):
        loss = nn.functional.mse_loss(self.net(batch["image"]), batch["y"])
        return loss, {"err": loss.detach().sqrt()}


def test_model_base_logs_and_schedules_as_the_recipes_expect(tmp_path):
    model = Regression(BaseConfig())
    assert dict(model.hparams) == BaseConfig().to_dict()
    optimizers = model.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.5
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1 * min(1, (s + 1) / 2) * 0.5 * (1 + math.cos(math.pi * max(s - 2, 0) / 8)) for s in range(10)]
    assert lrs == pytest.approx(expected)  # a linear warm-up over 2 steps, then a cosine to 0 at step 10

    x = torch.randn(16, 3)
    data = DataLoader([{"image": a, "y": a.sum(0, keepdim=True)} for a in x], batch_size=8)
    trainer = harness.make_trainer("smoke", max_steps=4, run_dir=tmp_path, name="base", log_every_n_steps=1)
    trainer.fit(Regression(BaseConfig(max_steps=4)), train_dataloaders=data)
    assert {"train_loss", "train_err"} <= set(harness.logged_history(trainer))


def test_frozen_parts_load_once_follow_the_device_and_are_not_saved():
    model = Regression(BaseConfig())
    tokenizer = model.frozen("tokenizer")
    assert model.frozen("tokenizer") is tokenizer and not tokenizer.training
    assert not any(p.requires_grad for p in tokenizer.parameters())
    assert set(model.state_dict()) == {"net.weight", "net.bias"}  # the frozen part is not a submodule
    stand_in = Regression(BaseConfig())
    model.set_frozen("tokenizer", stand_in)
    assert model.frozen("tokenizer") is stand_in and not stand_in.training


@pytest.mark.parametrize("name", ["shapes_classifier", pytest.param("clip", marks=pytest.mark.slow)])  # clip: 15 s
def test_cotlab_evaluate_remeasures_a_shipped_model_in_a_copy(name, tmp_path, capsys):
    """``cotlab evaluate FOLDER`` on a copy of a shipped checkpoint runs its recipe's evaluation in the
    card's profile (cpu) with the code as it is now: the numbers its card holds come out again, the
    copy's card says when they were measured, and the shipped folder is left as it was."""
    from cotlab.cli import main

    shipped = io.DATA_DIR / "checkpoints" / name
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    copy = tmp_path / name
    shutil.copytree(shipped, copy)
    assert main(["evaluate", str(copy)]) == 0
    original, card = json.loads(before["card.json"]), checkpoint_card(copy)
    assert card["profile"] == "cpu"
    measured = [k for k in original["metrics"] if not k.startswith("train_") and k != "temperature"]  # the rest: logged
    for key in measured:  # the cpu-sized evaluation reproduces the shipped numbers
        assert card["metrics"][key] == pytest.approx(original["metrics"][key], abs=1e-6), key
    assert card["evaluated"]["command"] == f"cotlab evaluate {copy}" and card["evaluated"]["commit"] == io.git_commit()
    assert {k: card[k] for k in ("command", "steps", "date")} == {k: original[k] for k in ("command", "steps", "date")}
    printed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert set(measured) <= printed <= set(card["metrics"])  # what it printed is what the card now holds
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
