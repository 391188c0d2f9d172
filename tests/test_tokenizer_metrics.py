"""Tokenizer evaluation and its bench: evaluator agreement, codebook statistics, the whole evaluation and
``cotlab bench tokenizers``, on stand-in tokenizers (smoke sizes)."""

import json

import pytest
import torch
from tokenizer_standins import Blur, CellColours, HybridCells, Identity

from cotlab import bench as generic_bench
from cotlab.classifier import ShapesClassifier, ShapesClassifierConfig
from cotlab.cli import main
from cotlab.errors import CotlabError
from cotlab.tokenizers import bench
from cotlab.tokenizers.bench import TOKENIZERS, bench_tokenizers
from cotlab.tokenizers.metrics import codebook_stats, evaluate_tokenizer, evaluator_agreement, variants


@pytest.fixture(scope="module")
def classifier():
    """An untrained smoke classifier: Shapes-FD is still 0 between identical sets."""
    torch.manual_seed(0)
    return ShapesClassifier(ShapesClassifierConfig.for_profile("smoke")).eval()


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
    assert set(continuous) == {"psnr", "ssim", "agreement", "shapes_fd", "tokens_per_image", "bits_per_image",
                               "interval"}
    assert set(continuous["interval"]) == {"psnr", "ssim", "agreement", "shapes_fd"}
    assert continuous["agreement"] == 1.0 and continuous["shapes_fd"] == pytest.approx(0, abs=1e-6)
    discrete = evaluate_tokenizer(CellColours(), n=16)
    assert set(discrete) == {"psnr", "ssim", "agreement", "tokens_per_image", "bits_per_image", "usage",
                             "perplexity", "interval"}
    assert all(lo <= discrete[key] <= hi for key, (lo, hi) in discrete["interval"].items())
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
