"""The train-it-yourself path, for every model: ``cotlab train NAME --profile smoke --out DIR`` builds it,
fits it, runs its recipe's evaluation and writes a checkpoint that loads back, with a card holding the
evaluation's numbers (and their 95 % intervals where the evaluation gives them), the command and the
commit, and writes nothing under data/. Models built on shipped checkpoints (maskgit on vq_f8 and clip,
the students on sprint_teacher …) load those, as a reader's run does."""

import json
import math
import os

import pytest

from cotlab import io
from cotlab.cli import main
from cotlab.harness import load_checkpoint
from cotlab.registry import RECIPES
from cotlab.shapes import TAGS


def tokenizer_keys(prefix: str = "", discrete: bool = True) -> set[str]:
    keys = {"psnr", "ssim", "agreement", "tokens_per_image", "bits_per_image",
            "psnr_interval", "ssim_interval", "agreement_interval"} | ({"usage", "perplexity"} if discrete else set())
    return {prefix + key for key in keys}


def reward_keys(*kinds: str) -> set[str]:
    """``heldout_quality``'s keys: each kind's classification metrics, on all held-out prompts and on the
    prompts no training example has (``unseen_``)."""
    quality = {f"{kind}_{key}" for kind in kinds for key in ("precision", "recall", "accuracy", "auroc", "positives")}
    return quality | {f"unseen_{key}" for key in quality} | {"seen_prompt_share", "unseen_prompts"}


GENEVAL = {"geneval_overall", "geneval_overall_interval", "forward_passes", *(f"geneval_{tag}" for tag in TAGS)}
EVALUATION = {  # recipe -> the keys its evaluation writes to the card (the rest are the last logged train_*)
    "clip": {*TAGS, "mean", *(f"{key}_interval" for key in (*TAGS, "mean"))},
    "shapes_classifier": {"cell_accuracy", "object_accuracy", "image_accuracy"},
    **{name: tokenizer_keys() for name in ("vq_f8", "vq_f4", "vq_f8_plain")},
    **{name: tokenizer_keys(discrete=False) for name in ("dcae_f8", "dcae_f4", "dcae_f8_noshortcut")},
    **{name: tokenizer_keys("discrete_") | tokenizer_keys("discrete+residual_")
       for name in ("hybrid_f8", "hybrid_f8_alternating")},
    "dcar_head": set(),  # judged by cotlab bench hybrid, not by its card
    "orm": reward_keys("final"),
    "prm": reward_keys("final", "step"),
    "parm": reward_keys("final", "step", "clear"),
    **{name: GENEVAL for name in ("maskgit", "raster_ar", "maskgit_f4", "raster_ar_f4", "maskgit_hybrid", "sana",
                                  "sana_f4", "sprint_teacher", "sprint", "sprint_scm", "sprint_ladd", "xar",
                                  "xar_token", "xar_cell", "xar_subsample", "xar_scale", "xar_image", "xar_cell_tf")},
    **{name: GENEVAL | {"heldout_overall", "heldout_overall_interval"}
       for name in ("dpo", "dpo_two_masks", "it_dpo", "dpo_guidance_released", "dpo_guidance", "grpo", "grpo_parm", "grpo_oracle")},
}

def files_under(folder) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, modification time in ns)."""
    return {os.path.relpath(os.path.join(root, f), folder): (s.st_size, s.st_mtime_ns)
            for root, _, files in os.walk(folder) for f in files for s in [os.stat(os.path.join(root, f))]}


def test_every_recipe_has_its_evaluation_listed_here():
    assert set(EVALUATION) == set(RECIPES), "add the new recipe's card keys to EVALUATION"


@pytest.mark.slow  # each trains and evaluates a model: 1-25 s (sprint_teacher, whose teacher is sana's full size)
@pytest.mark.parametrize("name", RECIPES)
def test_train_smoke_writes_a_checkpoint_and_its_card(name, tmp_path, capsys):
    data_before = files_under(io.DATA_DIR)
    out = tmp_path / "run"
    assert main(["train", name, "--profile", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint: {out}" in printed

    model = load_checkpoint(out)
    card = json.loads((out / "card.json").read_text())
    assert card["name"] == name and card["class"] == f"{type(model).__module__}.{type(model).__qualname__}"
    assert card["command"] == f"cotlab train {name} --profile smoke --seed 0"
    assert card["commit"] == io.git_commit() and card["profile"] == "smoke"
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    evaluated = {key for key in card["metrics"] if not key.startswith("train_")}
    assert evaluated == EVALUATION[name]
    for key in evaluated:
        value = card["metrics"][key]
        if key.endswith("_interval"):
            if key == "heldout_overall_interval":  # smoke's held-out prompts give colors one prompt: no interval
                assert all(math.isnan(v) for v in value) and len(value) == 2
            else:
                low, high = value  # rounded to 4 decimals
                estimate = card["metrics"][key.removesuffix("_interval")]
                assert low <= high and low - 5e-5 <= estimate <= high + 5e-5, f"{key}: {value}, estimate {estimate}"
        else:
            assert isinstance(value, (int, float)) and math.isfinite(value), f"{key}: {value}"
    assert card["steps"] == model.config.max_steps, "a smoke run trains its configured steps, not until a timer stops it"
    assert f"`{card['command']}`" in (out / "MODEL_CARD.md").read_text()
    assert files_under(io.DATA_DIR) == data_before, "cotlab train without --ship must not write under data/"
