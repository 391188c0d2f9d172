"""Image metrics and the Shapes classifier: conversions, PSNR/SSIM, the classifier whose features define
Shapes-FD, and Shapes-FD itself (smoke sizes)."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from tokenizer_standins import Blur
from torchmetrics.image.fid import _compute_fid

from cotlab.classifier import (CLASSES, ShapesClassifier, ShapesClassifierConfig, cell_accuracy, cell_labels,
                               labelled_cells)
from cotlab.metrics import (as_image, device_of, feature_statistics, features, frechet_distance, pooled_psnr,
                            pooled_psnr_with_interval, psnr, psnr_of_errors, psnr_per_image, shapes_fd,
                            shapes_fd_contrast, shapes_fd_with_interval, ssim, ssim_per_image, to_tensor, to_uint8)
from cotlab.registry import get_recipe
from cotlab.shapes import Obj, Scene, ShapesDataModule, World, make_batch
from cotlab.stats import bootstrap_values


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
    assert as_image(torch.tensor([[[-0.5, 0.5]], [[1.5, 0.25]], [[0.0, 1.0]]])).tolist() == \
        [[[0.0, 1.0, 0.0], [0.5, 0.25, 1.0]]]  # (3, 1, 2) -> (1, 2, 3), clamped to [0, 1]
    assert device_of(torch.nn.Linear(2, 2)) == device_of(object()) == torch.device("cpu")
    assert device_of(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")  # where its parameters are


def test_to_uint8_rounds_to_the_nearest_level_clamps_and_puts_channels_last():
    # pixel (0, 0) has channels 100.4/255, 100.6/255, -0.2; pixel (0, 1) has 1.3, 0, 1
    x = torch.tensor([[[[100.4 / 255, 1.3]], [[100.6 / 255, 0.0]], [[-0.2, 1.0]]]])  # (1, 3, 1, 2)
    assert to_uint8(x).tolist() == [[[[100, 101, 0], [255, 0, 255]]]]  # (1, 1, 2, 3)
    back = to_tensor(np.array([[[[0, 51, 255]]]], dtype=np.uint8))  # (1, 1, 1, 3) -> (1, 3, 1, 1)
    assert back.shape == (1, 3, 1, 1) and back.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def two_known_pairs():
    """Image 0 off by 0.1 everywhere (MSE 0.01, 20 dB); image 1 off by 0.2 on half its pixels
    (MSE 0.04 / 2 = 0.02, 10·log10 50 ≈ 16.99 dB)."""
    x = torch.full((2, 3, 4, 4), 0.5)
    y = x.clone()
    y[0] = 0.6
    y[1, :, :2] = 0.3
    return x, y


def test_psnr_per_image_mean_and_pooled_of_known_errors():
    x, y = two_known_pairs()
    assert psnr_per_image(x, y).tolist() == pytest.approx([20.0, 10 * math.log10(50)], abs=1e-4)
    assert psnr(x, y) == pytest.approx((20.0 + 10 * math.log10(50)) / 2, abs=1e-4)  # mean of the dB
    pooled = 10 * math.log10(1 / 0.015)  # the MSE pooled first: (0.01 + 0.02) / 2
    assert pooled_psnr(x, y) == pytest.approx(pooled, abs=1e-4)
    assert psnr_of_errors(np.array([0.01, 0.02])) == pytest.approx(pooled, abs=1e-9)


def test_pooled_psnr_interval_spans_the_resamples_of_two_images():
    """Two images: a resample is both image 0 (MSE 0.01, 20 dB, chance ¼), both image 1 (MSE 0.02,
    16.99 dB, chance ¼) or one of each (the pooled value): over 1000 resamples the 2.5 % and 97.5 %
    quantiles are the two extremes."""
    value, (lo, hi) = pooled_psnr_with_interval(*two_known_pairs())
    assert value == pytest.approx(10 * math.log10(1 / 0.015), abs=1e-4)
    assert (lo, hi) == pytest.approx((10 * math.log10(50), 20.0), abs=1e-4)


def test_ssim_of_flat_images_is_the_luminance_term():
    """On flat images the variances and the covariance are 0, so SSIM = (2ab + C₁) / (a² + b² + C₁)
    with C₁ = (0.01 · data range)²: a = 0.5, b = 0.25 give 0.2501 / 0.3126."""
    x = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1).expand(2, 3, 16, 16)
    y = torch.full((2, 3, 16, 16), 0.25)
    expected = (2 * 0.5 * 0.25 + 1e-4) / (0.5 ** 2 + 0.25 ** 2 + 1e-4)
    assert ssim_per_image(x, y).tolist() == pytest.approx([expected, 1.0], abs=1e-6)
    assert ssim(x, y) == pytest.approx((expected + 1.0) / 2, abs=1e-6)


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


def brute_force_fd(mu1, sigma1, mu2, sigma2) -> float:
    """FD with scipy's general matrix square root of Σ₁Σ₂ (not symmetric, hence the real part)."""
    covmean = scipy.linalg.sqrtm(sigma1.numpy() @ sigma2.numpy()).real
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * np.trace(covmean))


def test_frechet_distance_equals_the_brute_force_and_the_diagonal_closed_form():
    g = torch.Generator().manual_seed(1)
    a, b = (0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    mu1, mu2 = torch.randn(2, 4, generator=g, dtype=torch.float64)
    sigma1, sigma2 = a @ a.T + 0.01 * torch.eye(4), b @ b.T + 0.01 * torch.eye(4)  # eigenvalues below 1, too
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(brute_force_fd(mu1, sigma1, mu2, sigma2),
                                                                       rel=1e-9)
    # diagonal: FD = Σ (μ₁ − μ₂)² + Σ (√a_i − √b_i)²
    #              = (1 + 4) + ((0.5 − 1)² + (3 − 0.2)²) = 5 + 8.09
    diagonal = frechet_distance(*(torch.tensor(v, dtype=torch.float64) for v in (
        [1.0, -1.0], [[0.25, 0.0], [0.0, 9.0]], [2.0, 1.0], [[1.0, 0.0], [0.0, 0.04]])))
    assert diagonal == pytest.approx(13.09, abs=1e-9)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-12)


def test_feature_statistics_are_the_mean_and_unbiased_covariance():
    # deviations from μ = (3, 4): (−2, −2), (0, 2), (2, 0); Σ = 1/(3 − 1) · [[8, 4], [4, 8]]
    mu, sigma = feature_statistics(torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]]))
    assert mu.tolist() == [3.0, 4.0] and sigma.tolist() == [[4.0, 2.0], [2.0, 4.0]]
    mu, sigma = feature_statistics(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))  # two images are enough
    assert mu.tolist() == [1.0, 3.0] and sigma.tolist() == [[2.0, 4.0], [4.0, 8.0]]


class LinearFeatures(torch.nn.Module):
    """A stand-in classifier whose features are 3 × the mean red and 2 × the mean blue of an image."""
    device = torch.device("cpu")

    def features(self, x):
        return x.mean((2, 3))[:, [0, 2]] * torch.tensor([3.0, 2.0])  # (B, 2)


def flat_images(red_blue) -> torch.Tensor:
    """(B, 3, 4, 4) images of one colour each, green 0."""
    levels = torch.tensor([[r, 0.0, b] for r, b in red_blue])
    return levels[:, :, None, None].expand(-1, -1, 4, 4).contiguous()


# real features (0.3, 0.4), (0.9, 0.4), (0.6, 1.0); the fake ones twice those
REAL = flat_images([(0.1, 0.2), (0.3, 0.2), (0.2, 0.5)])
FAKE = flat_images([(0.2, 0.4), (0.6, 0.4), (0.4, 1.0)])


def doubled_fd(f: torch.Tensor) -> float:
    """FD between features f and 2f: ‖μ − 2μ‖² + Tr(Σ + 4Σ − 2(4Σ²)^{1/2}) = ‖μ‖² + Tr Σ."""
    return float(f.mean(0).square().sum() + f.var(0).sum())


def test_features_apply_the_classifier_in_batches_and_restore_its_mode():
    classifier = LinearFeatures().train()
    f = features(REAL, classifier, batch_size=2)
    assert f.dtype == torch.float64 and classifier.training
    assert torch.allclose(f, torch.tensor([[0.3, 0.4], [0.9, 0.4], [0.6, 1.0]], dtype=torch.float64), atol=1e-6)


def test_shapes_fd_of_a_known_linear_classifier():
    """μ = (0.6, 0.6), Tr Σ = (0.09 + 0.09 + 0) / 2 + (0.04 + 0.04 + 0.16) / 2 = 0.21: FD = 0.72 + 0.21."""
    assert shapes_fd(REAL, FAKE, LinearFeatures()) == pytest.approx(0.93, abs=1e-6)
    assert shapes_fd(FAKE, REAL, LinearFeatures()) == pytest.approx(0.93, abs=1e-6)


def test_shapes_fd_interval_is_the_bootstrap_spread_centred_on_the_full_fd():
    """Each resample keeps fake = 2 × real item by item, so its FD is ``doubled_fd`` of the resampled real
    features; the interval is their 2.5 % and 97.5 % quantiles shifted so that their median is the full FD."""
    pairs = [(0.1, 0.2), (0.3, 0.2), (0.2, 0.5), (0.4, 0.1), (0.15, 0.3), (0.05, 0.45), (0.35, 0.4), (0.5, 0.05)]
    real, fake = flat_images(pairs), flat_images([(2 * r, 2 * b) for r, b in pairs])
    f = features(real, LinearFeatures())
    full, interval = shapes_fd_with_interval(real, fake, LinearFeatures())
    assert full == pytest.approx(doubled_fd(f), abs=1e-6)
    resampled = bootstrap_values(doubled_fd, f, resamples=200)  # the default
    assert np.median(resampled) != pytest.approx(full, abs=1e-3)  # so the centring shows
    expected = np.quantile(resampled, [0.025, 0.975]) - np.median(resampled) + full
    assert interval == pytest.approx(expected.tolist(), abs=1e-6)


def test_shapes_fd_contrast_is_a_paired_difference_resampled_by_prompt():
    """FD(f, 3f) = 4‖μ‖² + Tr(10Σ − 2·3Σ) = 4(‖μ‖² + Tr Σ) and FD(f, 2f) = ‖μ‖² + Tr Σ, so with weights
    (1, −1) every resample's contrast is 3·``doubled_fd`` of its real features. A resample draws whole
    prompts (here 4 prompts × 2 images); the interval is checked against such draws made by hand."""
    pairs = [(0.1, 0.2), (0.3, 0.2), (0.2, 0.5), (0.4, 0.1), (0.15, 0.3), (0.05, 0.45), (0.35, 0.4), (0.5, 0.05)]
    real = flat_images(pairs)
    twice, thrice = (flat_images([(k * r, k * b) for r, b in pairs]) for k in (2, 3))
    f = features(real, LinearFeatures())  # (8, 2)
    result = shapes_fd_contrast(real, [thrice, twice], (1, -1), LinearFeatures(), per_prompt=2, resamples=50)
    assert result["value"] == pytest.approx(3 * doubled_fd(f), abs=1e-6)
    draws = np.random.default_rng(0).integers(4, size=(50, 4))  # bootstrap_values' draws of 4 prompts
    by_hand = np.array([3 * doubled_fd(f.reshape(4, 2, 2)[idx].reshape(8, 2)) for idx in draws])
    expected = np.quantile(by_hand, [0.025, 0.975]) - np.median(by_hand) + result["value"]
    assert result["interval"] == pytest.approx(expected.tolist(), abs=1e-6)
    same = shapes_fd_contrast(real, [twice, twice], (1, -1), LinearFeatures(), per_prompt=2, resamples=50)
    assert same == {"value": 0.0, "interval": [0.0, 0.0]}
    one = shapes_fd_contrast(real, [twice], (1,), LinearFeatures())
    assert one["value"] == pytest.approx(shapes_fd(real, twice, LinearFeatures()))


def test_shapes_fd_is_zero_on_itself_and_grows_with_blur(images, classifier):
    assert shapes_fd(images, images, classifier) == pytest.approx(0, abs=1e-6)
    mild, strong = (shapes_fd(images, Blur(s).reconstruct(images), classifier) for s in (0.5, 1.5))
    assert 0 < mild < strong


def test_features_reject_a_wrong_shape(classifier):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        features(torch.zeros(4, 32, 32, 3), classifier)
    with pytest.raises(ValueError, match="at least 2 images"):
        feature_statistics(torch.zeros(1, 8))
