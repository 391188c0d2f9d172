"""The shipped results: every benchmark's numbers once, in ``data/results/<bench>.json``.

``cotlab bench NAME --ship`` writes the benchmark's result there with where it came from (command,
commit, date, machine, minutes). Everything else that shows a shipped number reads it from that file:
``cotlab report`` prints the tables, ``cotlab report --readme`` rewrites the README's marked blocks

    <!-- results:NAME -->
    (the table of data/results/NAME.json, as `cotlab bench NAME` prints it)
    <!-- /results:NAME -->

(``tests/test_results.py`` fails when the README and the files differ), and each notebook shows the
shipped full-size result as its headline beside its own smaller in-run measurement.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from pathlib import Path

from cotlab.errors import CotlabError
from cotlab.io import DATA_DIR, REPO_ROOT, atomic_write_json, atomic_write_text, git_commit
from cotlab.registry import BENCHES, get_bench
from cotlab.stats import agree, with_interval

RESULTS_DIR = DATA_DIR / "results"
README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def machine() -> str:
    """The machine a result was measured on, in words: CPU cores or the GPU, and torch's version."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    return f"{device}, {platform.system()} {platform.machine()}, torch {torch.__version__}"


def save(name: str, result: dict, command: str, seconds: float) -> Path:
    """Write ``data/results/NAME.json``: the result and its provenance."""
    record = {"bench": name, "command": command, "commit": git_commit(),
              "date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(),
              "minutes": round(seconds / 60, 1), "result": result}
    return atomic_write_json(RESULTS_DIR / f"{name}.json", record)


def load(name: str) -> dict:
    """The shipped record of benchmark ``name`` (result under ``"result"``, provenance beside it)."""
    if name not in BENCHES:
        raise CotlabError(f"unknown benchmark '{name}': choose one of {', '.join(BENCHES)}")
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        raise CotlabError(f"no shipped result at {path}: make it with cotlab bench {name} --ship")
    return json.loads(path.read_text())


def shipped() -> list[str]:
    """The benchmarks with a shipped result, in the registry's order."""
    return [name for name in BENCHES if (RESULTS_DIR / f"{name}.json").is_file()]


def render(name: str) -> str:
    """The table of a shipped result, as its benchmark prints it, and the line saying where it came from."""
    record = load(name)
    return (get_bench(name).format(record["result"]).rstrip("\n")
            + f"\n\n<sub>`{record['command']}` · commit {record['commit']} · {record['date']} · "
              f"{record['machine']} · {record['minutes']} min</sub>\n")


def render_readme(text: str) -> str:
    """``text`` (the README) with every marked block replaced by its rendered result."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


def stale_blocks(path: Path = README) -> list[str]:
    """The names of the README's blocks that differ from what their results render."""
    text = path.read_text()
    return [m.group("name") for m in BLOCK.finditer(text) if m.group("body") != render(m.group("name"))]


def write_readme(path: Path = README) -> list[str]:
    """Rewrite the README's marked blocks from ``data/results/``; returns the names that changed."""
    changed = stale_blocks(path)
    if changed:
        atomic_write_text(path, render_readme(path.read_text()))
    return changed


def side_by_side(entries: dict[str, tuple], shipped: str, run: str, digits: int = 3) -> str:
    """A notebook's headline: for each ``{label: (shipped value, its interval, this run's value, its
    interval)}`` both numbers and whether they agree (their 95 % intervals overlap), as Markdown.
    ``shipped`` and ``run`` describe the two measurements (e.g. "shipped: 139 prompts × 4")."""
    lines = [f"| | {shipped} | {run} | agree? |", "|---|---|---|---|"]
    for label, (a, a_interval, b, b_interval) in entries.items():
        if any(math.isnan(v) for v in (*a_interval, *b_interval)):
            verdict = "cannot tell: too few prompts for an interval"
        else:
            verdict = "yes" if agree(a_interval, b_interval) else "**no**: the intervals do not overlap"
        lines.append(f"| {label} | {with_interval(a, a_interval, digits)} | {with_interval(b, b_interval, digits)} | "
                     f"{verdict} |")
    return "\n".join(lines)
