"""The capstone bench measures what the verification bench measures, on the same seeds: its maskgit
rows are compare()'s rows, image for image."""
import json

import pytest

from cotlab.harness import load_checkpoint
from cotlab.geneval import stratified_prompts
from cotlab.preference import bench as capstone
from cotlab.preference.bench import bench_capstone, format_capstone, merge_into_shipped
from cotlab.verification.evaluate import compare
from cotlab.errors import CotlabError


def test_capstone_rows_equal_the_verification_benchs_on_the_same_seeds():
    result = bench_capstone(["baseline", "orm", "parm"], every=100, n_samples=1, candidates=3, progress=False)
    verifiers = {name: load_checkpoint(name) for name in ("clip", "orm", "prm", "parm")}
    reference = compare(load_checkpoint("maskgit"), verifiers, stratified_prompts(100), n_samples=1, N=3,
                        scaling=(1, 3), scaling_every=100, progress=False)["table"]
    for name in ("baseline", "orm", "parm"):
        ours = result["table"][name]["benchmark"]
        assert ours["overall"] == pytest.approx(reference[name]["overall"]), name
        assert ours["passes"] == pytest.approx(reference[name]["passes"]), name
    assert result["table"]["orm"]["benchmark"]["passes"] == 3 * result["table"]["baseline"]["benchmark"]["passes"]
    assert {d["set"] for d in result["differences"]} <= {"benchmark", "heldout"}
    assert "held-out bindings" in format_capstone(result)
    with pytest.raises(CotlabError, match="unknown capstone row"):
        bench_capstone(["grpo+clip"])


def _row(overall):
    return {where: {"overall": overall, "interval": {"overall": [overall - 0.1, overall + 0.1]}, "passes": 16}
            for where in ("benchmark", "heldout")}


def _difference(a, b, where, value):
    return {"a": a, "b": b, "set": where, "difference": value, "interval": [value - 0.1, value + 0.1]}


SETTINGS = {"prompts": {"benchmark": 139, "heldout": 124}, "n_samples": 4, "N": 20, "steps": 8, "cfg": 3.0,
            "seed": 0, "every": 4}


def _shipped():
    result = {"table": {"baseline": _row(0.6), "dpo": _row(0.7), "grpo": _row(0.65)},
              "differences": [_difference("dpo", "baseline", "benchmark", 0.1),
                              _difference("grpo", "baseline", "heldout", 0.05)],
              "heldout_quality": {"ORM": "shipped"}, "paper": {}, "settings": SETTINGS, "seconds": 600.0}
    return {"result": result, "commit": "abc1234", "date": "2026-11-28", "minutes": 10.0}


@pytest.fixture
def unchanged(monkeypatch):
    """git says no checkpoint changed since the shipped commit; returns what it was asked."""
    asked = {}

    def changed_since(commit, paths):
        asked.update(commit=commit, paths=paths)
        asked.setdefault("calls", []).append((commit, paths))
        return asked.get("answer", [])
    monkeypatch.setattr(capstone, "changed_since", changed_since)
    return asked


def test_merge_adds_rows_in_the_tables_order_and_keeps_each_runs_provenance(unchanged):
    """Rows dpo (re-measured, equal) and guidance (new): the table keeps baseline and grpo from the
    shipped run, puts guidance after dpo as ROWS orders them, replaces the comparisons measured now,
    keeps the others, and says which run measured what."""
    now = {"table": {"dpo": _row(0.7), "guidance": _row(0.72)},
           "differences": [_difference("dpo", "baseline", "benchmark", 0.2),  # replaces the shipped 0.1
                           _difference("guidance", "dpo", "benchmark", 0.02)],
           "heldout_quality": {}, "paper": {}, "settings": SETTINGS, "seconds": 120.0}
    merged = merge_into_shipped(now, _shipped())
    assert list(merged["table"]) == ["baseline", "dpo", "guidance", "grpo"]
    assert merged["table"]["guidance"] == _row(0.72) and merged["table"]["grpo"] == _row(0.65)
    assert [(d["a"], d["b"], d["set"], d["difference"]) for d in merged["differences"]] == [
        ("dpo", "baseline", "benchmark", 0.2), ("guidance", "dpo", "benchmark", 0.02),
        ("grpo", "baseline", "heldout", 0.05)]  # in COMPARISONS' order
    assert merged["heldout_quality"] == {"ORM": "shipped"} and merged["seconds"] == 720.0
    assert [(r["rows"], r["minutes"]) for r in merged["runs"]] == [(["baseline", "dpo", "grpo"], 10.0),
                                                                   (["dpo", "guidance"], 2.0)]
    assert merged["runs"][0]["commit"] == "abc1234"
    assert "Measured in 2 runs" in format_capstone({**merged, "table": {}, "heldout_quality": {}})
    assert unchanged["commit"] == "abc1234" and unchanged["paths"] == [  # the shipped rows' generators, the judges
        f"data/checkpoints/{name}/model.safetensors" for name in ("dpo", "grpo", "maskgit", "orm", "parm", "prm")]


def test_merge_refuses_a_row_that_no_longer_reproduces_other_settings_and_changed_checkpoints(unchanged):
    changed = {"table": {"dpo": _row(0.71)}, "differences": [], "heldout_quality": {}, "paper": {},
               "settings": SETTINGS, "seconds": 1.0}
    with pytest.raises(CotlabError, match="row dpo measured now differs from the shipped one"):
        merge_into_shipped(changed, _shipped())
    with pytest.raises(CotlabError, match="--merge needs the shipped capstone's settings"):
        merge_into_shipped({**changed, "table": {}, "settings": {**SETTINGS, "N": 8}}, _shipped())
    unchanged["answer"] = ["data/checkpoints/grpo/model.safetensors"]
    with pytest.raises(CotlabError, match="grpo/model.safetensors changed; run the whole table"):
        merge_into_shipped({**changed, "table": {}}, _shipped())
    unchanged["answer"] = None
    with pytest.raises(CotlabError, match="git cannot tell"):
        merge_into_shipped({**changed, "table": {}}, _shipped())


def test_changed_since_reads_git(tmp_path):
    """A file committed, then edited in the working tree: changed since the commit; another not; an
    unknown commit: git cannot tell (None)."""
    import subprocess

    from cotlab.io import changed_since

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").write_text("1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                            text=True).stdout.strip()
    (tmp_path / "a").write_text("2")
    assert changed_since(commit, ["a", "b"], cwd=tmp_path) == ["a"]
    assert changed_since(commit, ["b"], cwd=tmp_path) == []
    assert changed_since("0000000", ["a"], cwd=tmp_path) is None


def test_a_row_reproduces_to_six_digits_not_to_one_verdict():
    """A learned reward's mean differs in the tenth digit between pool sizes: the same row. One
    verdict of 556 changes a score by about 2e-3: not the same row. Keys and nan must agree too."""
    row = {"overall": 0.679, "interval": {"overall": [0.65, 0.705]}, "orm_reward": 0.686740072243914, "passes": 16}
    assert capstone.reproduces({**row, "orm_reward": 0.6867400722088428}, row)
    assert not capstone.reproduces({**row, "overall": 0.679 + 1 / 556}, row)
    assert not capstone.reproduces({**row, "interval": {"overall": [0.65, 0.706]}}, row)
    assert not capstone.reproduces({k: v for k, v in row.items() if k != "passes"}, row)
    assert capstone.reproduces({**row, "overall": float("nan")}, {**row, "overall": float("nan")})


def test_a_refused_merge_keeps_the_runs_rows(monkeypatch, tmp_path):
    """The merge is checked after the run (it needs the rows): when it is refused, the hour's
    measurement is written to runs/capstone_unmerged.json and the error says where."""
    import argparse

    from cotlab import results

    now = {"table": {"dpo": _row(0.71)}, "differences": [], "heldout_quality": {}, "paper": {},
           "settings": SETTINGS, "seconds": 1.0}
    monkeypatch.setattr(results, "load", lambda name: _shipped())
    monkeypatch.setattr(capstone, "settings", lambda **options: SETTINGS)
    monkeypatch.setattr(capstone, "bench_capstone", lambda rows, **options: now)
    monkeypatch.setattr(capstone, "changed_since", lambda commit, paths: [])
    monkeypatch.setattr(capstone, "RUNS_DIR", tmp_path)
    args = argparse.Namespace(rows="dpo", every=4, n_samples=4, candidates=20, steps=8, cfg=3.0, seed=0, merge=True)
    with pytest.raises(CotlabError, match="row dpo measured now differs.*kept in .*capstone_unmerged.json"):
        capstone._run(args)
    assert json.loads((tmp_path / "capstone_unmerged.json").read_text()) == json.loads(json.dumps(now))


def test_a_second_merge_checks_each_runs_checkpoints_against_its_own_commit(unchanged):
    """A table measured in two runs: the first run's rows against its commit, the second's against
    theirs (grpo_parm did not exist at the first)."""
    record = _shipped()
    record["result"]["runs"] = [dict(rows=["baseline", "dpo"], commit="abc1234", date="d", minutes=1.0),
                                dict(rows=["grpo", "grpo_parm"], commit="def5678", date="d", minutes=1.0)]
    now = {"table": {}, "differences": [], "heldout_quality": {}, "paper": {}, "settings": SETTINGS, "seconds": 1.0}
    merged = merge_into_shipped(now, record)
    judges = ["orm", "parm", "prm"]
    assert unchanged["calls"] == [
        ("abc1234", [f"data/checkpoints/{n}/model.safetensors" for n in sorted(["dpo", "maskgit", *judges])]),
        ("def5678", [f"data/checkpoints/{n}/model.safetensors" for n in sorted(["grpo", "grpo_parm", *judges])])]
    assert [r["commit"] for r in merged["runs"][:2]] == ["abc1234", "def5678"] and len(merged["runs"]) == 3
