"""Tokenizer metrics: PSNR/SSIM, the Shapes classifier and Shapes-FD, evaluator agreement, codebook
statistics and the whole evaluation, on stand-in tokenizers (smoke sizes)."""

import json
import math

import numpy as np
import pytest
import torch
from tokenizer_standins import Blur, CellColours, HybridCells, Identity
from torchmetrics.image.fid import _compute_fid

from cotlab import harness
from cotlab.bench import bench_tokenizers
from cotlab.errors import CotlabError
from cotlab.registry import get_recipe
from cotlab.shapes import Obj, Scene, ShapesDataModule, World, make_batch
from cotlab.tokenizers.metrics import (CLASSES, ShapesClassifier, ShapesClassifierConfig, labelled_cells,
                                       cell_accuracy, cell_labels, codebook_stats, evaluate_tokenizer,
                                       evaluator_agreement, feature_statistics, features, frechet_distance,
                                       psnr, shapes_fd, ssim, variants)


@pytest.fixture(scope="module")
def images():
    return make_batch(World(), np.random.default_rng(0), 64)["image"]


@pytest.fixture(scope="module")
def classifier():
    """The smoke classifier after 20 steps: enough for its features to see shapes."""
    torch.manual_seed(0)
    model = ShapesClassifier(ShapesClassifierConfig.for_profile("smoke"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for batch, _ in zip(ShapesDataModule(batch_size=32, seed=0, view=labelled_cells).train_dataloader(), range(20)):
        loss, _ = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_psnr_and_ssim_of_identical_and_known_images(images):
    assert psnr(images, images) == math.inf
    assert ssim(images, images) == pytest.approx(1.0, abs=1e-4)  # float32 arithmetic
    x = torch.full((2, 3, 32, 32), 0.5)
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-4)  # 10·log10(1 / 0.01)
    assert ssim(Blur(1.0).reconstruct(images), images) < 1


def test_cell_labels_name_each_cells_content():
    assert len(CLASSES) == 25 and CLASSES[0] == "empty"
    labels = cell_labels([Scene((Obj("cross", "green", 2, 1),))])
    assert labels.shape == (1, 4, 4)
    assert CLASSES[labels[0, 2, 1]] == "green cross" and labels.sum() == labels[0, 2, 1]


def test_classifier_shapes_and_loss_falls():
    torch.manual_seed(0)
    model = ShapesClassifier(ShapesClassifierConfig.for_profile("smoke"))
    batch = next(iter(ShapesDataModule(batch_size=16, seed=1, view=labelled_cells).train_dataloader()))
    assert model(batch["image"]).shape == (16, 25, 4, 4)
    assert features(batch["image"], model).shape == (16, model.config.features)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss, _ = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_cell_accuracy_reports_cells_objects_and_images(classifier):
    result = cell_accuracy(classifier, n=32)
    assert set(result) == {"cell_accuracy", "object_accuracy", "image_accuracy"}
    assert all(0 <= v <= 1 for v in result.values())
    assert not classifier.training


def test_recipe_is_registered_and_builds_the_profile():
    recipe = get_recipe("shapes_classifier")
    model = recipe.build("smoke")
    assert isinstance(model, ShapesClassifier) and model.config.max_steps == 5
    assert ShapesClassifierConfig.for_profile("cpu").max_minutes <= 2


def test_frechet_distance_equals_torchmetrics_fid():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 8, generator=g, dtype=torch.float64)
    b = 0.5 + torch.randn(200, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 8, generator=g,
                                                                                  dtype=torch.float64)
    ours = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(_compute_fid(*feature_statistics(a), *feature_statistics(b)).item(), rel=1e-6)
    assert frechet_distance(*feature_statistics(a), *feature_statistics(a)) == pytest.approx(0, abs=1e-8)


def test_shapes_fd_is_zero_on_itself_and_grows_with_blur(images, classifier):
    assert shapes_fd(images, images, classifier) == pytest.approx(0, abs=1e-6)
    mild, strong = (shapes_fd(images, Blur(s).reconstruct(images), classifier) for s in (0.5, 1.5))
    assert 0 < mild < strong


def test_features_reject_a_wrong_shape(classifier):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        features(torch.zeros(4, 32, 32, 3), classifier)


def test_codebook_stats():
    K = 16
    assert codebook_stats(torch.arange(K).repeat(5), K) == pytest.approx((1.0, K))  # uniform
    assert codebook_stats(torch.arange(K // 2).repeat(3, 1), K) == pytest.approx((0.5, K / 2))
    assert codebook_stats(torch.zeros(10, 16, dtype=torch.long), K) == pytest.approx((1 / K, 1.0))
    with pytest.raises(ValueError, match="16 codes"):
        codebook_stats(torch.tensor([3, 16]), K)


def test_agreement_of_identity_is_one_and_blur_fails_with_reasons():
    assert evaluator_agreement(Identity(), n=12, seed=3) == (1.0, [])
    share, failures = evaluator_agreement(Blur(2.5), n=12, seed=3, keep=2)
    assert share < 1 and 0 < len(failures) <= 2
    assert failures[0]["before"] and not failures[0]["after"] and failures[0]["reason"]


def test_evaluate_tokenizer_returns_the_metrics(classifier):
    continuous = evaluate_tokenizer(Identity(), n=16, classifier=classifier)
    assert set(continuous) == {"psnr", "ssim", "agreement", "shapes_fd", "tokens_per_image", "bits_per_image"}
    assert continuous["agreement"] == 1.0 and continuous["shapes_fd"] == pytest.approx(0, abs=1e-6)
    discrete = evaluate_tokenizer(CellColours(), n=16)
    assert set(discrete) == {"psnr", "ssim", "agreement", "tokens_per_image", "bits_per_image", "usage",
                             "perplexity"}
    assert 0 < discrete["usage"] <= 1 and 1 <= discrete["perplexity"] <= 8
    assert discrete["bits_per_image"] == 48.0 and discrete["psnr"] < 30
    json.dumps(discrete)  # plain numbers, for model cards and metrics.json


def test_hybrid_has_two_variants_and_discrete_rate():
    hybrid = HybridCells()
    assert variants(Identity()) == {"": {}}
    assert variants(hybrid) == {"discrete": {"residual": False}, "discrete+residual": {"residual": True}}
    discrete = evaluate_tokenizer(hybrid, n=16, residual=False)
    full = evaluate_tokenizer(hybrid, n=16, residual=True)
    assert discrete["bits_per_image"] == 48.0 and full["bits_per_image"] == hybrid.bits_per_image
    assert full["psnr"] > discrete["psnr"] + 3 and full["agreement"] == 1.0


# --- cotlab bench tokenizers, with stand-ins for the checkpoints --------------------------------
@pytest.fixture
def shipped(monkeypatch, classifier):
    """load_checkpoint finds two stand-in tokenizers and the classifier; nothing else is shipped."""
    found = {"vq_f8": CellColours(), "hybrid_f8": HybridCells(), "shapes_classifier": classifier}

    def load(name, map_location="cpu"):
        if name not in found:
            raise FileNotFoundError(f"no checkpoint '{name}' at data/checkpoints/{name} — "
                                    f"train it with: cotlab train {name} --profile cpu --ship")
        return found[name]

    monkeypatch.setattr(harness, "load_checkpoint", load)
    monkeypatch.setattr(harness, "checkpoint_card", lambda name: {"metrics": {"cell_accuracy": 0.5}})


def test_bench_compares_the_shipped_tokenizers(shipped, tmp_path, capsys):
    result = bench_tokenizers(n=8, json_path=tmp_path / "bench.json", batch_size=8)
    out = capsys.readouterr().out
    assert "skipped: no checkpoint 'vq_f4'" in out and "cotlab train vq_f4 --profile cpu --ship" in out
    assert [r["tokenizer"] for r in result["rows"]] == ["vq_f8", "hybrid_f8 (discrete)",
                                                        "hybrid_f8 (discrete+residual)"]
    assert all(r["encode_per_s"] > 0 and "shapes_fd" in r for r in result["rows"])
    assert "| hybrid_f8 (discrete+residual) |" in out and "not comparable to Inception FID" in out
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["usage"] == result["rows"][0]["usage"]


def test_bench_of_a_named_missing_checkpoint_names_the_command(shipped):
    with pytest.raises(FileNotFoundError, match="cotlab train dcae_f8 --profile cpu --ship"):
        bench_tokenizers(["vq_f8", "dcae_f8"], n=8)
    with pytest.raises(CotlabError, match="unknown tokenizer 'vqf8'"):
        bench_tokenizers(["vqf8"], n=8)


def test_best_time_is_the_fastest_call_after_a_warm_up():
    from cotlab.bench import best_time

    calls = []
    seconds = best_time(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5 and 0 <= seconds < 0.1
