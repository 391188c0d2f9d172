"""The cotlab command: help, and one-line errors that name the fix."""
import json

import pytest
import torch

from cotlab.cli import main
from cotlab.errors import CotlabError
from cotlab.geneval import benchmark_prompts
from cotlab.harness import save_checkpoint
from cotlab.io import DATA_DIR
from cotlab.masked_ar.model import MaskedAR, MaskedARConfig


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "train", "generate", "geneval", "bench"):
        assert command in out


@pytest.mark.parametrize("command", [["run"], ["train"], ["generate"], ["geneval", "score"], ["bench", "evaluator"],
                                     ["bench", "tokenizers"], ["bench", "decoding"]])
def test_every_subcommand_has_help(command, capsys):
    assert main([*command, "--help"]) == 0 and "usage: cotlab" in capsys.readouterr().out


def test_unknown_model_is_a_one_line_error(capsys):
    assert main(["train", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotlab: error: unknown model 'nosuchmodel': choose one of ")
    assert "clip" in err and err.count("\n") == 1


def test_unknown_profile_from_env_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("COTLAB_PROFILE", "laptop")
    assert main(["run", "--only", "00"]) == 2
    assert capsys.readouterr().err == "cotlab: error: unknown profile 'laptop': choose one of smoke, cpu, gpu\n"


def test_generate_errors_name_the_fix(tmp_path, capsys):
    prompts = str(DATA_DIR / "geneval_shapes" / "evaluation_metadata.jsonl")
    assert main(["generate", "nosuch", "--metadata", prompts, "--outdir", str(tmp_path / "o")]) == 2
    assert "train it with: cotlab train nosuch" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}\n{oops\n')
    assert main(["generate", "nosuch", "--metadata", str(bad), "--outdir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing written on bad input


@pytest.mark.parametrize("option, message", [(["--steps", "0"], "--steps: '0' is not a whole number of 1 or more"),
                                             (["--n-samples", "0"], "--n-samples: '0' is not"),
                                             (["--cfg", "nan"], "'nan' is not a guidance weight"),
                                             (["--solver", "sde"], "unknown solver 'sde'")])
def test_generate_refuses_bad_options_before_writing_anything(tmp_path, capsys, option, message):
    prompts = str(DATA_DIR / "geneval_shapes" / "evaluation_metadata.jsonl")
    assert main(["generate", "sana", "--metadata", prompts, "--outdir", str(tmp_path / "o"), *option]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # refused before the folder or its run.json is made


def test_generate_then_score(tmp_path, capsys):
    torch.manual_seed(0)
    folder = save_checkpoint(MaskedAR(MaskedARConfig.for_profile("smoke")), tmp_path / "tiny", name="tiny",
                             profile="smoke", command="test", train_seconds=0.0, steps=0, metrics={})
    prompts = tmp_path / "two.jsonl"
    prompts.write_text("".join(json.dumps(m) + "\n" for m in benchmark_prompts()[:2]))
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--metadata", str(prompts), "--outdir", str(out),
                 "--n-samples", "2", "--steps", "3", "--save-process"]) == 0
    assert sorted(p.name for p in (out / "00001" / "process" / "0001").iterdir()) == \
        ["step_00.png", "step_01.png", "step_02.png"]
    assert main(["geneval", "score", str(out)]) == 0
    assert "overall" in capsys.readouterr().out


@pytest.mark.parametrize("options, message", [({"n_samples": 0}, "--n-samples must be at least 1"),
                                              ({"cfg": float("nan")}, "--cfg must be a finite number"),
                                              ({"steps": 0}, "steps")])
def test_generate_folder_refuses_bad_options_from_python_too(tmp_path, options, message):
    """The checks behind the CLI's, for code that calls ``generate_folder`` itself."""
    from cotlab.generate import generate_folder

    torch.manual_seed(0)
    model = MaskedAR(MaskedARConfig.for_profile("smoke"))
    with pytest.raises((CotlabError, ValueError), match=message):  # the CLI says either in one line
        generate_folder(model, benchmark_prompts()[:1], tmp_path / "o", **options)
    assert not (tmp_path / "o").exists()
