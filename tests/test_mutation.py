"""``cotlab bench mutation``: how mutants are named, counted and scored (mutmut itself runs in ``make mutation``)."""
import math
import sys
import types

import pytest
import torch

from cotlab import mutation
from cotlab.errors import CotlabError
from cotlab.io import REPO_ROOT


def test_function_of_reads_functions_and_methods():
    assert mutation.function_of("cotlab.stats.x_agree__mutmut_2") == "agree"
    assert mutation.function_of("cotlab.geneval.x__fit__mutmut_17") == "_fit"
    assert mutation.function_of("cotlab.clip.xǁShapesCLIPǁscore__mutmut_3") == "ShapesCLIP.score"
    with pytest.raises(ValueError, match="not a mutmut mutant"):
        mutation.function_of("cotlab.stats.agree")


def test_tally_counts_only_the_counted_functions_and_scores_timeouts_as_killed():
    statuses = {"m.x_loss__mutmut_1": "killed", "m.x_loss__mutmut_2": "timeout", "m.x_loss__mutmut_3": "survived",
                "m.x_loss__mutmut_4": "no tests", "m.x_plot__mutmut_1": "survived"}
    counted = mutation.tally(statuses, ("loss",))
    # 4 counted mutants: 1 killed + 1 timeout caught, 1 survived, 1 without a test -> 2 / 4
    assert (counted["mutants"], counted["killed"], counted["timeout"], counted["survived"], counted["no_tests"]) \
        == (4, 1, 1, 1, 1)
    assert counted["score"] == 0.5
    assert counted["survivors"] == ["m.x_loss__mutmut_3", "m.x_loss__mutmut_4"]
    assert counted["all_functions_mutants"] == 5 and counted["unmutated"] == []
    assert mutation.tally(statuses, ("loss", "search"))["unmutated"] == ["search"]
    assert mutation.tally(statuses, None, ["loss", "plot", "search"])["unmutated"] == ["search"]
    everything = mutation.tally(statuses, None)
    assert everything["mutants"] == 5 and everything["score"] == pytest.approx(2 / 5)
    assert math.isnan(mutation.tally({}, None)["score"])


def test_tally_names_the_equivalent_survivors(monkeypatch):
    monkeypatch.setattr(mutation, "EQUIVALENT", {"m.x_f__mutmut_1": "a default nobody passes"})
    result = mutation.tally({"m.x_f__mutmut_1": "survived", "m.x_f__mutmut_2": "survived"}, None)
    assert result["equivalent"] == {"m.x_f__mutmut_1": "a default nobody passes"}
    assert result["score"] == 0  # an equivalent survivor is named, never counted as killed


def test_every_group_names_existing_modules_functions_and_tests():
    for name, group in mutation.GROUPS.items():
        assert any(REPO_ROOT.glob(g) for g in group.tests), name
        for module, counted in group.counted.items():
            source = (REPO_ROOT / module).read_text()
            for function in counted or ():
                assert f"def {function.split('.')[-1]}(" in source, (module, function)


def test_the_mutmut_config_names_the_group_modules_and_tests():
    config = mutation.mutmut_config(mutation.GROUPS["flow"], ["tests/test_flow.py"]).splitlines()
    assert config[0] == "[tool.mutmut]"
    assert 'only_mutate = ["cotlab/flow.py"]' in config
    assert 'pytest_add_cli_args_test_selection = ["tests/test_flow.py"]' in config


def test_an_unknown_group_is_refused_in_one_line():
    from argparse import Namespace
    with pytest.raises(CotlabError, match="unknown mutation group nope"):
        mutation.bench_mutation(Namespace(only="nope", show=False))


def test_the_table_marks_a_module_below_the_target():
    module = {"group": "flow", "counted": "all", "mutants": 10, "killed": 7, "timeout": 0, "survived": 3,
              "no_tests": 0, "equivalent": {}, "score": 0.7, "unmutated": ["search"]}
    table = mutation.format_mutation({"modules": {"cotlab/flow.py": module}, "mutants": 10, "score": 0.7,
                                      "target": 0.8, "mutmut": "3.8.1"})
    assert "| flow | `cotlab/flow.py` | all functions | 10 | 7 | 0 | 3 | 0 | 0 | 70% **(< 80 %)** |" in table
    assert "`flow.py` search." in table  # the module's path below cotlab/


def test_every_named_equivalent_mutant_is_of_a_counted_module_and_function():
    counted = {module.removesuffix(".py").replace("/", "."): functions
               for group in mutation.GROUPS.values() for module, functions in group.counted.items()}
    for name, reason in mutation.EQUIVALENT.items():
        module = mutation.MUTANT.match(name)["module"]
        assert module in counted and reason, name
        assert counted[module] is None or mutation.function_of(name) in counted[module], name
    assert "cotlab.masked_ar.decoding.xǁMaskGITPathsǁ__init____mutmut_1" in mutation.EQUIVALENT


def test_functions_in_lists_functions_and_methods_in_order():
    source = "import x\n\ndef f():\n    pass\n\nclass A:\n    N = 1\n\n    @property\n    def g(self):\n        return 1\n\nasync def h():\n    pass\n"
    assert mutation.functions_in(source) == ["f", "A.g", "h"]


def test_a_group_mutmut_cannot_run_is_reported_and_the_others_measured(monkeypatch):
    from argparse import Namespace

    def run_group(name, show=False):
        if name == "flow":
            raise CotlabError("mutmut failed on group 'flow' (exit 1): read runs/mutation/flow/mutmut.log")
        return {"cotlab/stats.py": {"counted": "all", "mutants": 4, "killed": 3, "timeout": 0, "survived": 1,
                                    "no_tests": 0, "equivalent": {}, "unmutated": [], "score": 0.75}}
    monkeypatch.setattr(mutation, "run_group", run_group)
    monkeypatch.setitem(sys.modules, "mutmut", types.ModuleType("mutmut"))  # make test runs without mutmut
    monkeypatch.setattr(mutation, "_mutmut_version", lambda: "3.8.1")
    result = mutation.bench_mutation(Namespace(only="stats,flow", show=False))
    assert result["failed"] == {"flow": "mutmut failed on group 'flow' (exit 1): read runs/mutation/flow/mutmut.log"}
    assert result["mutants"] == 4 and result["score"] == 0.75
    assert "| flow | could not be measured: mutmut failed on group 'flow'" in mutation.format_mutation(result)


SOURCE = '''import torch


@torch.no_grad()
def doubled(x):
    """2x, without a graph."""
    y = 2 * x
    return y, torch.is_grad_enabled()


@staticmethod
def kept(x):
    return x


class Paths:
    @torch.no_grad()
    def step(self, x):
        note = """a string
over lines"""
        return x + 1, note, torch.is_grad_enabled()
'''


def test_no_grad_inside_moves_the_decorator_into_the_body():
    """The rewrite mutmut sees: no ``@torch.no_grad()`` left, the docstring above the ``with``, other
    decorators kept, a multi-line string's text unchanged — and the functions compute what they did,
    with grad mode off inside them."""
    rewritten = mutation.no_grad_inside(SOURCE)
    assert "@torch.no_grad()" not in rewritten and "@staticmethod" in rewritten
    assert ('def doubled(x):\n    """2x, without a graph."""\n    with torch.no_grad():\n        y = 2 * x\n'
            in rewritten)
    assert 'note = """a string\nover lines"""' in rewritten
    for source in (SOURCE, rewritten):
        namespace = {}
        exec(compile(source, "<source>", "exec"), namespace)
        x = torch.ones(2, requires_grad=True)
        y, grad_mode = namespace["doubled"](x)
        assert y.tolist() == [2.0, 2.0] and not y.requires_grad and grad_mode is False
        assert namespace["Paths"]().step(1) == (2, "a string\nover lines", False)


def test_no_grad_inside_leaves_every_counted_module_compiling():
    for group in mutation.GROUPS.values():
        for module in group.counted:
            rewritten = mutation.no_grad_inside((REPO_ROOT / module).read_text())
            compile(rewritten, module, "exec")
            assert "@torch.no_grad()" not in rewritten, module
