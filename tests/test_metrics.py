"""Image metrics and the Shapes classifier: conversions, PSNR/SSIM, the classifier whose features define
Shapes-FD, and Shapes-FD itself (smoke sizes)."""

import math

import numpy as np
import pytest
import torch
from tokenizer_standins import Blur
from torchmetrics.image.fid import _compute_fid

from cotlab.classifier import (CLASSES, ShapesClassifier, ShapesClassifierConfig, cell_accuracy, cell_labels,
                               labelled_cells)
from cotlab.metrics import (as_image, device_of, feature_statistics, features, frechet_distance, pooled_psnr, psnr,
                            shapes_fd, ssim, to_tensor, to_uint8)
from cotlab.registry import get_recipe
from cotlab.shapes import Obj, Scene, ShapesDataModule, World, make_batch


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


def test_conversions_round_trip(images):
    uint8 = to_uint8(images)
    assert uint8.shape == (64, 32, 32, 3) and uint8.dtype == np.uint8
    assert torch.allclose(to_tensor(uint8), images, atol=0.5 / 255 + 1e-6)
    assert np.array_equal(to_uint8(to_tensor(uint8)), uint8)
    one = uint8[0]
    assert as_image(images[0]).shape == (32, 32, 3) and as_image(one) is one  # uint8 as it is
    assert device_of(torch.nn.Linear(2, 2)) == device_of(object()) == torch.device("cpu")


def test_psnr_and_ssim_of_identical_and_known_images(images):
    assert psnr(images, images) == math.inf
    assert ssim(images, images) == pytest.approx(1.0, abs=1e-4)  # float32 arithmetic
    x = torch.full((2, 3, 32, 32), 0.5)
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-4)  # 10·log10(1 / 0.01)
    assert ssim(Blur(1.0).reconstruct(images), images) < 1
    y = x.clone()
    y[1] += 0.1  # one image exact, one off by 0.1: the pooled MSE is 0.005
    assert pooled_psnr(y, x) == pytest.approx(10 * math.log10(200), abs=1e-3)


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
        loss, logs = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert 0 <= logs["acc"] <= 1


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
    with pytest.raises(ValueError, match="at least 2 images"):
        feature_statistics(torch.zeros(1, 8))
