"""The cotlab command: help, and one-line errors that name the fix."""

import pytest

from cotlab.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "train", "geneval", "bench"):
        assert command in out


@pytest.mark.parametrize("command", [["run"], ["train"], ["geneval", "score"], ["bench", "evaluator"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0 and "usage: cotlab" in capsys.readouterr().out


def test_unknown_model_is_a_one_line_error(capsys):
    assert main(["train", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cotlab: error: unknown model 'nosuchmodel': choose one of ")
    assert "clip" in err and err.count("\n") == 1


def test_unknown_profile_from_env_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("COTLAB_PROFILE", "laptop")
    assert main(["run", "--only", "00"]) == 2
    assert capsys.readouterr().err == "cotlab: error: unknown profile 'laptop': choose one of smoke, cpu, gpu\n"
