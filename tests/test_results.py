"""One source for every result number: data/results/<bench>.json, and the README rendered from it."""
import json

import pytest

from cotlab import results
from cotlab.cli import main
from cotlab.registry import BENCHES


def test_every_benchmark_has_a_shipped_result_with_its_provenance():
    assert results.shipped() == list(BENCHES), "ship each with: cotlab bench NAME --ship"
    for name in BENCHES:
        record = results.load(name)
        assert record["command"].startswith(f"cotlab bench {name}") and "--ship" in record["command"]
        assert record["commit"] != "unknown" and not record["commit"].endswith("-dirty"), \
            f"{name}: ship results from a clean commit"
        assert record["date"] and record["machine"] and record["minutes"] >= 0


def test_the_readme_tables_are_rendered_from_the_results():
    text = results.README.read_text()
    blocks = [m.group("name") for m in results.BLOCK.finditer(text)]
    assert sorted(blocks) == sorted(BENCHES), "every shipped result has one block in the README"
    assert results.stale_blocks() == [], "the README differs from data/results/: run cotlab report --readme"


def test_a_number_changed_in_one_place_only_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    text = results.README.read_text()
    block = next(results.BLOCK.finditer(text))
    body = block.group("body")
    digit = next(i for i, ch in enumerate(body) if ch.isdigit())
    changed = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
    readme.write_text(text.replace(body, changed, 1))
    assert results.stale_blocks(readme) == [block.group("name")]
    assert results.write_readme(readme) == [block.group("name")] and readme.read_text() == text


def test_ship_writes_the_result_with_its_provenance_and_report_renders_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    assert main(["bench", "clip", "--n", "4", "--ship"]) == 0
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["command"] == "cotlab bench clip --n 4 --ship" and record["result"]["n_per_tag"] == 4
    assert {"commit", "date", "machine", "minutes"} <= set(record)
    capsys.readouterr()
    assert main(["report", "clip"]) == 0
    out = capsys.readouterr().out
    assert "| single_object |" in out and "cotlab bench clip --n 4 --ship" in out


def test_a_missing_or_unknown_result_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    with pytest.raises(Exception, match="cotlab bench decoding --ship"):
        results.load("decoding")
    assert main(["report", "nosuch"]) == 2
    assert "unknown benchmark 'nosuch'" in capsys.readouterr().err


def test_side_by_side_says_whether_two_measurements_agree():
    table = results.side_by_side({"a": (0.5, [0.4, 0.6], 0.55, [0.5, 0.7]), "b": (0.5, [0.4, 0.6], 0.8, [0.7, 0.9]),
                                  "c": (0.5, [0.4, 0.6], 0.5, [float("nan")] * 2)}, "shipped", "this run")
    rows = table.splitlines()[2:]
    assert rows[0].endswith("| yes |") and "**no**" in rows[1] and "cannot tell" in rows[2]
