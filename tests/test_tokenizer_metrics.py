"""Tokenizer evaluation and its bench: evaluator agreement, codebook statistics, the whole evaluation and
``cotlab bench tokenizers``, on stand-in tokenizers (smoke sizes)."""

import json
import math

import numpy as np
import pytest
import torch
from tokenizer_standins import Blur, CellColours, HybridCells, Identity

from cotlab import bench as generic_bench
from cotlab.classifier import ShapesClassifier, ShapesClassifierConfig
from cotlab.cli import main
from cotlab.errors import CotlabError
from cotlab.tokenizers import bench
from cotlab.tokenizers.bench import TOKENIZERS, bench_tokenizers
from cotlab import geneval
from cotlab.shapes import BACKGROUND, World, make_batch
from cotlab.stats import proportion_interval
from cotlab.tokenizers.metrics import (codebook_stats, compare_verdicts, evaluate_tokenizer, evaluator_agreement,
                                       reconstruct, reference_set, residual_gain, variants)


@pytest.fixture(scope="module")
def classifier():
    """An untrained smoke classifier: Shapes-FD is still 0 between identical sets."""
    torch.manual_seed(0)
    return ShapesClassifier(ShapesClassifierConfig.for_profile("smoke")).eval()


def test_codebook_stats_by_hand():
    # codes 0 0 1 / 2 0 1 of K = 4: counts (3, 2, 1, 0), usage 3/4; p = (1/2, 1/3, 1/6), so
    # perplexity exp(−Σ p log p) = Π p^−p = 2^(1/2) · 3^(1/3) · 6^(1/6) = 1.41421 · 1.44225 · 1.34801 = 2.74946
    usage, perplexity = codebook_stats(torch.tensor([[0, 0, 1], [2, 0, 1]]), 4)
    assert usage == 0.75 and perplexity == pytest.approx(2 ** (1 / 2) * 3 ** (1 / 3) * 6 ** (1 / 6), rel=1e-12)
    assert perplexity == pytest.approx(2.74946, abs=1e-5)
    K = 16
    assert codebook_stats(torch.arange(K).repeat(5), K) == pytest.approx((1.0, K))  # uniform
    assert codebook_stats(torch.arange(K // 2).repeat(3, 1, 2), K) == pytest.approx((0.5, K / 2))
    assert codebook_stats(torch.zeros(10, 16, dtype=torch.long), K) == pytest.approx((1 / K, 1.0))
    with pytest.raises(ValueError, match="indices go up to 16 but the codebook has 16 codes"):
        codebook_stats(torch.tensor([3, 16]), K)


BACKGROUND_PIXEL = torch.tensor(BACKGROUND, dtype=torch.float32).view(3, 1, 1) / 255


class Blank(Identity):
    """Every ``every``-th image, from the second on, comes back as the plain background (``every=1``: all)."""
    def reconstruct(self, images, every: int = 2):
        out = images.clone()
        out[1 % every::every] = BACKGROUND_PIXEL
        return out


class Off(Identity):
    """Every pixel moved by ``d`` towards mid-grey: MSE d², PSNR 10·log10(1 / d²) on every image; a hybrid
    whose residual halves the error (``residual=False``: 2d)."""
    def __init__(self, d: float = 0.05):
        self.d = d

    def reconstruct(self, images, residual: bool = True):
        d = self.d if residual else 2 * self.d
        return images + torch.where(images < 0.5, d, -d)


class FixedCodes(Identity):
    """Discrete, K = 8: every image's four tokens are codes 0, 1, 2, 2."""
    codebook_size = 8

    def encode_indices(self, images):
        return torch.tensor([0, 1, 2, 2]).repeat(len(images), 1)  # (B, N)

    def reconstruct(self, images, residual: bool = True):
        return images.clone()


def test_reference_scenes_are_the_worlds_samples_judged_true():
    images, metas, before = reference_set(12, 3, World())
    batch = make_batch(World(), np.random.default_rng(3), 12)
    assert torch.equal(images, batch["image"]) and metas == batch["meta"] and before == [(True, "")] * 12


def test_compare_verdicts_counts_the_changed_verdicts():
    images, metas, before = reference_set(12, 3, World())
    blank = images.clone()
    blank[[1, 4, 9]] = BACKGROUND_PIXEL
    share, failures = compare_verdicts(blank, metas, before, keep=2)
    assert share == 9 / 12 and [f["index"] for f in failures] == [1, 4]
    assert failures[0] == {"index": 1, "prompt": metas[1]["prompt"], "before": True, "after": False,
                           "reason": geneval.evaluate([], metas[1])[1]}  # "expected 1 …, found 0"
    wrong_before = [(False, "was wrong")] + before[1:]
    assert len(compare_verdicts(torch.zeros_like(images) + BACKGROUND_PIXEL, metas, before)[1]) == 8  # by default
    assert compare_verdicts(images, metas, wrong_before) == (11 / 12, [
        {"index": 0, "prompt": metas[0]["prompt"], "before": False, "after": True, "reason": "was wrong"}])


def test_agreement_of_known_tokenizers():
    assert evaluator_agreement(Identity(), n=12, seed=3) == (1.0, [])
    share, failures = evaluator_agreement(Blank(), n=12, seed=3)  # images 1, 3, …, 11 blanked
    assert share == 0.5 and [f["index"] for f in failures] == [1, 3, 5, 7, 9, 11]
    assert evaluator_agreement(Blank(), n=12, seed=3, every=3)[0] == 8 / 12  # 1, 4, 7, 10 blanked
    share, failures = evaluator_agreement(Blank(), n=12, seed=3, keep=3, every=1)
    assert share == 0.0 and [f["index"] for f in failures] == [0, 1, 2]
    _, metas, _ = reference_set(12, 3, World())
    assert [f["prompt"] for f in failures] == [m["prompt"] for m in metas[:3]]  # the scenes of seed 3
    assert len(evaluator_agreement(Blank(), n=12, seed=3, every=1)[1]) == 8  # the first 8 changes by default


def test_agreement_is_lost_where_blur_erases_shapes():
    share, failures = evaluator_agreement(Blur(2.5), n=12, seed=3, keep=2)
    assert share < 1 and len(failures) == 2
    assert failures[0]["before"] and not failures[0]["after"] and failures[0]["reason"]


class Recorder:
    """A model in training mode that records the batches it reconstructs and overshoots [0, 1]."""
    training = True

    def __init__(self):
        self.batches, self.modes = [], []

    def eval(self):
        self.training = False

    def train(self):
        self.training = True

    def reconstruct(self, images, gain: float = 3.0):
        self.batches.append(len(images))
        self.modes.append(self.training)
        return images * gain - 1


def test_reconstruct_batches_clamps_and_restores_the_mode():
    images = torch.linspace(0, 1, 10 * 3 * 2 * 2).view(10, 3, 2, 2)
    model = Recorder()
    out = reconstruct(model, images, batch_size=4, gain=2.5)  # values −1 … 1.5
    assert torch.equal(out, (images * 2.5 - 1).clamp(0, 1))
    assert model.batches == [4, 4, 2] and model.modes == [False] * 3 and model.training


def test_evaluate_tokenizer_of_known_tokenizers(classifier):
    n = 16
    identity = evaluate_tokenizer(Identity(), n=n, classifier=classifier)
    assert set(identity) == {"psnr", "ssim", "agreement", "shapes_fd", "tokens_per_image", "bits_per_image",
                             "interval"}
    assert set(identity["interval"]) == {"psnr", "ssim", "agreement", "shapes_fd"}
    assert identity["psnr"] == math.inf and identity["ssim"] == pytest.approx(1.0, abs=1e-5) and identity["agreement"] == 1.0
    assert identity["interval"]["psnr"] == [math.inf, math.inf]
    assert identity["interval"]["agreement"] == proportion_interval(16, 16)
    assert identity["shapes_fd"] == pytest.approx(0, abs=1e-6)
    assert (identity["tokens_per_image"], identity["bits_per_image"]) == (32 * 32, 3 * 32 * 32 * 16.0)
    off = evaluate_tokenizer(Off(0.05), n=n)
    psnr = 10 * math.log10(1 / 0.05 ** 2)  # 26.0206 dB on every image
    assert off["psnr"] == pytest.approx(psnr, abs=1e-3) and off["interval"]["psnr"] == pytest.approx([psnr] * 2, abs=1e-3)
    blank = evaluate_tokenizer(Blank(), n=n)
    assert blank["agreement"] == 0.5 and blank["interval"]["agreement"] == proportion_interval(8, 16)
    codes = evaluate_tokenizer(FixedCodes(), n=n, batch_size=5)
    # codes 0, 1, 2, 2 of 8: usage 3/8, p = (1/4, 1/4, 1/2), perplexity 4^(1/4) · 4^(1/4) · 2^(1/2) = 2√2
    assert codes["usage"] == 3 / 8 and codes["perplexity"] == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert (codes["tokens_per_image"], codes["bits_per_image"]) == (32 * 32, 3 * 32 * 32 * 16.0)
    discrete = evaluate_tokenizer(FixedCodes(), n=n, residual=False)  # the rate of the 4 tokens of 3 bits
    assert (discrete["tokens_per_image"], discrete["bits_per_image"]) == (4, 12.0)
    json.dumps(codes)  # plain numbers, for model cards and metrics.json


def test_cell_colours_evaluate_to_their_codes():
    discrete = evaluate_tokenizer(CellColours(), n=16)
    assert set(discrete) == {"psnr", "ssim", "agreement", "tokens_per_image", "bits_per_image", "usage",
                             "perplexity", "interval"}
    images, _, _ = reference_set(16, 0, World())
    assert (discrete["usage"], discrete["perplexity"]) == codebook_stats(CellColours().encode_indices(images), 8)
    assert discrete["bits_per_image"] == 48.0


def test_residual_gain_of_a_known_hybrid():
    # residual on: error 0.05 per pixel, off: 0.1; PSNR gains 20·log10(2) = 6.0206 dB on every scene
    gain = residual_gain(Off(0.05), n=12, seed=3)
    assert gain["psnr"] == pytest.approx(20 * math.log10(2), abs=1e-3)
    assert gain["interval"] == pytest.approx([20 * math.log10(2)] * 2, abs=1e-3)


def test_hybrid_has_two_variants_and_discrete_rate():
    hybrid = HybridCells()
    assert variants(Identity()) == {"": {}}
    assert variants(hybrid) == {"discrete": {"residual": False}, "discrete+residual": {"residual": True}}
    discrete = evaluate_tokenizer(hybrid, n=16, residual=False)
    full = evaluate_tokenizer(hybrid, n=16, residual=True)
    assert discrete["bits_per_image"] == 48.0 and full["bits_per_image"] == hybrid.bits_per_image
    assert full["psnr"] > 150 and full["agreement"] == 1.0  # the residual is exact, up to float rounding
    assert discrete["psnr"] < 30


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

    monkeypatch.setattr(generic_bench, "load_checkpoint", load)
    monkeypatch.setattr(bench, "load_checkpoint", load)
    monkeypatch.setattr(bench, "checkpoint_card", lambda name: {"metrics": {"cell_accuracy": 0.5}})


def test_bench_compares_the_shipped_tokenizers(shipped, tmp_path, capsys):
    result = bench_tokenizers(n=8, batch_size=8)
    out = capsys.readouterr().out + bench.format_tokenizers(result)
    assert "skipped: no checkpoint 'vq_f4'" in out and "cotlab train vq_f4 --profile cpu --ship" in out
    assert [r["tokenizer"] for r in result["rows"]] == ["vq_f8", "hybrid_f8 (discrete)",
                                                        "hybrid_f8 (discrete+residual)"]
    assert all(r["encode_per_s"] > 0 and "shapes_fd" in r for r in result["rows"])
    assert "| hybrid_f8 (discrete+residual) |" in out and "not comparable to Inception FID" in out
    assert "hybrid_f8: the residual adds" in out and set(result["residual_gain"]) == {"hybrid_f8"}


def test_bench_of_a_named_missing_checkpoint_names_the_command(shipped):
    with pytest.raises(FileNotFoundError, match="cotlab train dcae_f8 --profile cpu --ship"):
        bench_tokenizers(["vq_f8", "dcae_f8"], n=8)
    with pytest.raises(CotlabError, match="unknown tokenizer 'vqf8'"):
        bench_tokenizers(["vqf8"], n=8)


def test_tokenizers_are_the_recipes_of_the_house():
    assert TOKENIZERS == ("vq_f8", "vq_f4", "vq_f8_plain", "dcae_f8", "dcae_f4", "dcae_f8_noshortcut",
                          "hybrid_f8", "hybrid_f8_alternating")


def test_the_command_line_runs_the_bench(shipped, tmp_path, capsys):
    assert main(["bench", "tokenizers", "--n", "8", "--only", "vq_f8", "--json", str(tmp_path / "bench.json")]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["n"] == 8 and result["seed"] == 0 and [r["tokenizer"] for r in result["rows"]] == ["vq_f8"]
    assert "| vq_f8 |" in capsys.readouterr().out


def test_best_time_is_the_fastest_call_after_a_warm_up():
    calls = []
    seconds = generic_bench.best_time(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5 and 0 <= seconds < 0.1


def test_best_time_fills_its_seconds_with_calls_when_they_are_short(monkeypatch):
    clock, durations = [0.0], iter([0.05, 0.03, 0.01, 0.02, 0.04, 0.005, 0.005])  # the first is the warm-up
    monkeypatch.setattr(generic_bench.time, "perf_counter", lambda: clock[0])

    def call():
        clock[0] += next(durations)

    # 0.2 s over a 0.05 s warm-up: 4 timed calls (more than repeats=3), the fastest of them 0.01 s
    assert generic_bench.best_time(call, repeats=3, seconds=0.2) == pytest.approx(0.01)
    assert next(durations) == 0.005  # the fifth timed call was never made
