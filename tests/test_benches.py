"""Each benchmark as ``cotlab bench NAME … --json FILE`` runs it at its smallest size: it exits 0, and the
table it prints is its ``format`` of the JSON it wrote, so every number in the table is in the file (the
README renders the shipped files the same way: tests/test_results.py). Benchmarks too slow for a test at
any size are listed in ``TOO_SLOW`` with the reason."""

import json

import pytest

from cotlab.cli import main
from cotlab.registry import BENCHES, get_bench

SMALLEST = {  # bench -> its smallest options
    "evaluator": ["--n", "60"],
    "clip": ["--n", "4"],
    "tokenizers": ["--n", "8", "--only", "vq_f8"],
    "decoding": ["--only", "maskgit,raster_ar", "--steps", "2", "--every", "100", "--n-samples", "1"],
    "hybrid": ["--every", "100", "--n-samples", "1", "--steps", "2"],
    "dit": ["--only", "sana", "--every", "100", "--n-samples", "1"],
    "throughput": ["--only", "sana", "--batch-size", "2", "--repeats", "1"],
    "scaling": ["--every", "100", "--samples", "2"],
    "verification": ["--candidates", "2", "--steps", "2", "--every", "100", "--n-samples", "1",
                     "--scaling-every", "100"],
    "capstone": ["--rows", "baseline,orm", "--candidates", "2", "--steps", "2", "--every", "100", "--n-samples", "1"],
}
TOO_SLOW = {  # measured with OMP_NUM_THREADS=1 at the smallest options
    "xar": "it trains each ablation variant in the cpu profile for its 5-minute budget; no option makes that smaller",
    "growth": "its pruned model is fine-tuned for 10 % of sana's 3,000 steps in the cpu profile whatever --steps "
              "says: over 10 minutes (tests/test_dit.py runs bench_growth in the smoke profile instead)",
    "sampling": "it times the 20-step teacher at batch 1 and 64 whatever --only says (the speed-ups are against it): "
                "55 s at --only sprint --every 100 --n-samples 1",
    "mutation": "it runs mutmut over the number-making modules: many minutes, kept out of make test by design",
    "attention": "on the CPU each peak-memory point runs in a freshly spawned process that imports torch: 78 s for "
                 "--lengths 64,128 (tests/test_dit.py runs bench_attention's timing and slopes)",
}


def test_every_benchmark_is_run_here_or_says_why_not():
    assert set(SMALLEST) | set(TOO_SLOW) == set(BENCHES) and not set(SMALLEST) & set(TOO_SLOW)


SLOW = {"evaluator", "tokenizers", "hybrid", "dit", "scaling", "verification", "capstone"}  # 5-20 s each, measured


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SMALLEST])
def test_bench_prints_the_table_of_the_json_it_writes(name, tmp_path, capsys):
    path = tmp_path / f"{name}.json"
    assert main(["bench", name, *SMALLEST[name], "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    table = get_bench(name).format(json.loads(path.read_text()))
    assert table.strip() and table in printed
