"""The capstone bench measures what the verification bench measures, on the same seeds: its maskgit
rows are compare()'s rows, image for image."""
import pytest

from cotlab.harness import load_checkpoint
from cotlab.geneval import stratified_prompts
from cotlab.preference.bench import bench_capstone, format_capstone
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
