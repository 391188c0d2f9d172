"""How well the tests guard the numbers: the mutation score of the number-making code.

A test protects a number only if breaking the code that makes it fails a test. Mutation testing
measures exactly that (DeMillo, Lipton and Sayward, *Hints on Test Data Selection*, 1978): mutmut
(https://github.com/boxed/mutmut) makes many small edits to the code — ``<`` for ``<=``, ``+`` for
``-``, a constant changed, an argument dropped, a ``return`` emptied — one at a time, and runs the
tests that cover the edited function. A mutant is *killed* when a test fails (or never finishes: a
timeout). A module's score is

    score = killed / mutants,

over the functions that make the workbook's numbers (``GROUPS``: the scorer, the metrics, the searches,
the losses …; a module's plumbing is mutated too but not counted). Every survivor is a missing test
or an *equivalent* mutant — one that no input can tell apart from the original, e.g. a default
argument that every caller overrides — and those are named in ``EQUIVALENT`` with the reason, so a
reader can check each one.

``cotlab bench mutation`` (``make mutation``; not part of ``make test``) runs each group in its own
scratch folder ``runs/mutation/GROUP/`` — a copy of ``cotlab/`` and ``tests/`` that mutmut edits, so the
working tree is never touched — on one thread per test process (a forked torch with a thread pool
hangs), with the group's fast tests (those marked ``slow`` are left out: each mutant reruns the tests
that reach it, so one slow test would multiply), and ``--show`` prints every survivor's diff.

mutmut leaves decorated functions alone, and the searches, the decoding steps and the scores run under
``@torch.no_grad()``. The scratch copy therefore moves that decorator inside (``no_grad_inside``): the
same function with its body under ``with torch.no_grad():``, which mutmut does mutate.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from cotlab.bench import Bench, only_option, parse_names
from cotlab.errors import CotlabError
from cotlab.io import DATA_DIR, REPO_ROOT, RUNS_DIR

TARGET = 0.80  # the bar: at least 80 % of a module's counted mutants killed


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the tests that must kill their mutants. ``counted`` maps a module
    to the functions whose mutants count (``Class.method`` for a method), or to None for all of them."""
    counted: dict[str, tuple[str, ...] | None]
    tests: tuple[str, ...]  # globs under the repository root


GROUPS = {
    "geneval": Group({"cotlab/geneval.py": (
        "_shape_moments", "_directions", "detect", "_pieces", "_fit", "_object_at", "nearest_render",
        "relative_position", "check", "evaluate", "judge", "ground_truth", "truth", "judge_folder",
        "summarize", "_sample_key", "_resampled_tasks", "intervals", "paired_difference", "contrast",
        "summarize_scores", "compare_folders")},
        ("tests/test_geneval*.py",)),
    "stats": Group({"cotlab/stats.py": None}, ("tests/test_stats*.py",)),
    "metrics": Group({"cotlab/metrics.py": None}, ("tests/test_metrics*.py",)),
    "clip": Group({"cotlab/clip.py": ("ShapesCLIP.score", "ShapesCLIP.contrastive_loss", "contrast_pair",
                                      "caption_accuracy")},
                  ("tests/test_clip*.py",)),
    "tokenizers": Group({"cotlab/tokenizers/metrics.py": None}, ("tests/test_tokenizer_metrics*.py",)),
    "masked_ar": Group({"cotlab/masked_ar/model.py": ("cosine_schedule", "random_mask", "MaskedAR.guided_logits",
                                                       "MaskedAR.loss"),
                        "cotlab/masked_ar/decoding.py": None},
                       ("tests/test_masked_ar*.py",)),
    "verification": Group({"cotlab/verification/search.py": None, "cotlab/verification/evaluate.py": None,
                           "cotlab/verification/metrics.py": None},
                          ("tests/test_verification*.py",)),
    "flow": Group({"cotlab/flow.py": None}, ("tests/test_flow*.py",)),
    "preference": Group({"cotlab/preference/dpo.py": ("masked_logp", "pair_masks", "dpo_loss", "DPO.loss",
                                                      "DPO.guidance_term"),
                         "cotlab/preference/grpo.py": (
                             "choice_temperatures", "step_log_probability", "trajectory_logp", "remask_ratios",
                             "remask_masks", "remask_logp", "group_advantages", "grpo_objective")},
                        ("tests/test_preference*.py", "tests/test_grpo*.py")),
    "attention": Group({"cotlab/dit/attention.py": None}, ("tests/test_dit_attention*.py",)),
    "sprint": Group({"cotlab/sprint/model.py": ("SprintStudent.trigflow", "SprintStudent.teacher_velocity",
                                                "SprintStudent.consistency_loss", "consistency_tangent",
                                                "hinge_loss")},
                    ("tests/test_sprint*.py",)),
}


def _named(module: str, reason: str, **numbers: tuple[int, ...]) -> dict[str, str]:
    """``{mutant name: reason}`` for the mutants ``function=(numbers …)`` of a module (``Class__method``
    for a method)."""
    def name(function: str, k: int) -> str:
        cls, _, method = function.partition("__")
        return f"{module}.xǁ{cls}ǁ{method}__mutmut_{k}" if method else f"{module}.x_{function}__mutmut_{k}"
    return {name(f, k): reason for f, ks in numbers.items() for k in ks}


ON_CPU = "a device or batch size changed: the same numbers on a CPU-only machine, so no test here can see it"
DEFAULT = "a default argument changed that every caller passes explicitly"
DTYPE = "a dtype dropped or None where numpy infers the same one"
# Survivors that no test can kill, each with the reason (reviewed by reading each diff: cotlab bench mutation --show).
EQUIVALENT: dict[str, str] = {
    **_named("cotlab.stats", 'float("NAN") is the same nan', quantile_interval=(12, 15)),
    **_named("cotlab.geneval", DTYPE, relative_position=(7, 9, 17, 19), detect=(2,),
             nearest_render=(35, 37, 40, 43, 45)),
    **_named("cotlab.geneval", "the relations found are the same on every input (a sign division, np.all(None), "
             "<= at a 1e-3 cut-off)", relative_position=(37, 47, 49)),
    **_named("cotlab.geneval", "matched = None is as falsy as False", check=(64, 92, 108)),
    **_named("cotlab.geneval", "strict= dropped: tensordot raises the same ValueError", contrast=(10, 13, 14)),
    **_named("cotlab.geneval", "an empty or extra grid cell is skipped by part.any()",
             _pieces=(13, 33, 39, 41, 42, 45, 51)),
    **_named("cotlab.flow", "mean − std·z: z ↦ −z leaves N(0, 1) unchanged", logit_normal_sigmas=(16,),
             trigflow_thetas=(3,)),
    **_named("cotlab.flow", "the scheduler never reads the timestep when it starts at index 0", euler_sample=(28,)),
    **_named("cotlab.dit.attention", "transpose(2, −1) is transpose(−2, −1) on the (B, H, N, D) inputs",
             linear_attention=(21,)),
    **_named("cotlab.tokenizers.metrics", ON_CPU, evaluate_tokenizer=(1, 27, 91, 97), reconstruct=(25, 27)),
    **_named("cotlab.masked_ar.decoding", DEFAULT, MaskGITPaths____init__=(1, 2, 3, 4, 5),
             RasterPaths____init__=(1, 2, 3)),
    **_named("cotlab.masked_ar.decoding", ON_CPU, MaskGITPaths____init__=(43, 46, 57, 61),
             MaskGITPaths__record=(6, 8), MaskGITPaths__redraw=(3,), MaskGITPaths__restore=(10,),
             MaskGITPaths__step=(13,), RasterPaths____init__=(36, 40), RasterPaths__images=(7,),
             RasterPaths__restore=(2,), RasterPaths__step=(13, 22, 35, 40, 42, 59, 62, 64)),
    **_named("cotlab.masked_ar.decoding", DTYPE + " (torch: int64 for an integer fill, float32 for t / steps)",
             MaskGITPaths____init__=(56, 60), RasterPaths____init__=(35, 39), mask_schedule=(13, 15)),
    **_named("cotlab.masked_ar.decoding", "an argument dropped that equals the library's default (interpolate's "
             "nearest, AmusedScheduler's cosine)", cells_to_tokens=(21,), MaskGITPaths____init__=(38,)),
    **_named("cotlab.masked_ar.decoding", "the prefix with empty captions at cfg = 1 too: those rows are never read "
             "there", MaskGITPaths____init__=(50,), RasterPaths____init__=(29,)),
    **_named("cotlab.masked_ar.decoding", "row − B wraps to row + B in the 2B-row prefix", MaskGITPaths__step=(11,),
             RasterPaths__step=(11,)),
    **_named("cotlab.masked_ar.decoding", "a shared step computed for more rows: they hold one state, so the same "
             "logits", MaskGITPaths__step=(2, 4, 33), RasterPaths__step=(2, 4)),
    **_named("cotlab.masked_ar.decoding", "softmax over dim 1 of (R, K) is over −1", RasterPaths__step=(43,)),
    **_named("cotlab.masked_ar.decoding", "final images are asked for once a path is done, where sampled equals "
             "tokens", MaskGITPaths__images=(5,), RasterPaths__images=(5,)),
    **_named("cotlab.verification.search", "a sentinel only compared with < 0 (a path turns clear at step 1 or "
             "later), or one every path overwrites", parm_search=(18, 21, 41, 42), step_search=(10,)),
    **_named("cotlab.verification.search", DEFAULT, reflect=(1,)),
    **_named("cotlab.verification.search", "copy_state's rows None means every row: range(N)", step_search=(39,)),
}

KILLED, TIMEOUT, SURVIVED, NO_TESTS = "killed", "timeout", "survived", "no tests"
STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS,
          36: TIMEOUT, 24: TIMEOUT, -24: TIMEOUT, 152: TIMEOUT, 255: TIMEOUT}
MUTANT = re.compile(r"^(?P<module>[\w.]+)\.x(?:_(?P<function>\w+?)|ǁ(?P<cls>\w+)ǁ(?P<method>\w+?))__mutmut_\d+$")


def function_of(mutant: str) -> str:
    """``cotlab.clip.xǁShapesCLIPǁscore__mutmut_3`` -> ``ShapesCLIP.score``; ``…x_agree__mutmut_2`` -> ``agree``."""
    m = MUTANT.match(mutant)
    if m is None:
        raise ValueError(f"not a mutmut mutant name: {mutant}")
    return m["function"] or f"{m['cls']}.{m['method']}"


def functions_in(source: str) -> list[str]:
    """The functions of a module's source, ``Class.method`` for methods, in order."""
    tree = ast.parse(source)
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    return [name for node in tree.body for name in
            ([node.name] if isinstance(node, defs) else
             [f"{node.name}.{f.name}" for f in node.body if isinstance(f, defs)] if isinstance(node, ast.ClassDef) else [])]


def no_grad_inside(source: str) -> str:
    """``source`` with every ``@torch.no_grad()`` function rewritten to hold its body under
    ``with torch.no_grad():`` (its docstring left above) — the same function (none of them is a
    generator), which mutmut mutates where it skips a decorated one. Lines inside a multi-line string
    keep their text."""
    lines = source.splitlines(keepends=True)
    inside_string = {row for token in tokenize.generate_tokens(iter(lines).__next__)
                     if token.type == tokenize.STRING for row in range(token.start[0] + 1, token.end[0] + 1)}
    edits = []  # (decorator line, first body line, last line), 1-based
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if ast.unparse(decorator) == "torch.no_grad()":
                    code = node.body[1:] if ast.get_docstring(node) is not None else node.body  # the docstring stays
                    edits.append((decorator.lineno, code[0].lineno, node.end_lineno))
    for decorator, first, last in sorted(edits, reverse=True):  # bottom up: earlier line numbers stay valid
        indent = re.match(r"\s*", lines[first - 1]).group()
        body = [line if row in inside_string or not line.strip() else "    " + line
                for row, line in enumerate(lines[first - 1:last], first)]
        lines[first - 1:last] = [f"{indent}with torch.no_grad():\n", *body]
        del lines[decorator - 1]
    return "".join(lines)


def tally(statuses: dict[str, str], counted: tuple[str, ...] | None, functions: list[str] = ()) -> dict:
    """A module's score from ``{mutant: status}``: the counted mutants' killed, timeout, survived and
    untested numbers, the score (killed + timeout) / mutants, the survivors by name, and the counted
    ``functions`` without a single mutant (properties and cached functions: mutmut leaves decorated
    functions alone; those are guarded by deliberate breaks in the tests, not measured here)."""
    mine = {k: s for k, s in statuses.items() if counted is None or function_of(k) in counted}
    mutated = {function_of(k) for k in statuses}
    unmutated = [f for f in (counted or functions) if f not in mutated]
    n = {status: sum(s == status for s in mine.values()) for status in (KILLED, TIMEOUT, SURVIVED, NO_TESTS)}
    survivors = sorted(k for k, s in mine.items() if s in (SURVIVED, NO_TESTS))
    return {"mutants": len(mine), **{k.replace(" ", "_"): v for k, v in n.items()},
            "score": (n[KILLED] + n[TIMEOUT]) / len(mine) if mine else float("nan"),
            "survivors": survivors, "equivalent": {k: EQUIVALENT[k] for k in survivors if k in EQUIVALENT},
            "unmutated": unmutated, "all_functions_mutants": len(statuses)}


def mutmut_config(group: Group, tests: list[str]) -> str:
    """The ``[tool.mutmut]`` section for one group (TOML)."""
    def strings(xs):
        return "[" + ", ".join(json.dumps(x) for x in xs) + "]"
    return ("[tool.mutmut]\nsource_paths = [\"cotlab\"]\n"
            f"only_mutate = {strings(group.counted)}\n"
            f"pytest_add_cli_args_test_selection = {strings(tests)}\n"
            "pytest_add_cli_args = [\"-q\", \"-p\", \"no:cacheprovider\", \"-m\", \"not slow\"]\n")


def run_group(name: str, show: bool = False) -> dict:
    """Mutate one group in ``runs/mutation/NAME/`` and return its per-module tallies."""
    group = GROUPS[name]
    tests = sorted(str(p.relative_to(REPO_ROOT)) for g in group.tests for p in REPO_ROOT.glob(g))
    if not tests:
        raise CotlabError(f"mutation group '{name}' has no tests matching {', '.join(group.tests)}")
    scratch = RUNS_DIR / "mutation" / name
    shutil.rmtree(scratch, ignore_errors=True)
    for part in ("cotlab", "tests"):
        shutil.copytree(REPO_ROOT / part, scratch / part, ignore=shutil.ignore_patterns("__pycache__"))
    for module in group.counted:
        (scratch / module).write_text(no_grad_inside((REPO_ROOT / module).read_text()))
    (scratch / "pyproject.toml").write_text(mutmut_config(group, tests))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COTLAB_DATA": str(DATA_DIR),
           "COTLAB_RUNS": str(scratch / "runs")}
    with open(scratch / "mutmut.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(os.cpu_count() or 1)],
                              cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise CotlabError(f"mutmut failed on group '{name}' (exit {done.returncode}): read {scratch / 'mutmut.log'}")
    result = {}
    for module, counted in group.counted.items():
        meta = json.loads((scratch / "mutants" / (module + ".meta")).read_text())
        statuses = {k: STATUS.get(code, f"other ({code})") for k, code in meta["exit_code_by_key"].items()}
        functions = functions_in((REPO_ROOT / module).read_text())
        result[module] = {"tests": tests, "counted": list(counted) if counted else "all",
                          **tally(statuses, counted, functions)}
        if show:
            for mutant in result[module]["survivors"]:
                print(subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=scratch, env=env,
                                     capture_output=True, text=True).stdout)
    return result


def bench_mutation(args: argparse.Namespace) -> dict:
    names = parse_names(args.only) or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise CotlabError(f"unknown mutation group {', '.join(unknown)}: choose from {', '.join(GROUPS)}")
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise CotlabError("mutation testing needs mutmut: pip install 'mutmut~=3.8.1' (or run make mutation)") from None
    modules, failed = {}, {}
    for name in names:
        try:
            modules.update({module: {"group": name, **r} for module, r in run_group(name, args.show).items()})
        except CotlabError as error:  # e.g. a test that fails under mutmut's trampolines: said, not hidden
            failed[name] = str(error)
    total = sum(r["mutants"] for r in modules.values())
    caught = sum(r["killed"] + r["timeout"] for r in modules.values())
    return {"modules": modules, "failed": failed, "mutants": total,
            "score": caught / total if total else float("nan"), "target": TARGET, "mutmut": _mutmut_version()}


def _mutmut_version() -> str:
    from importlib.metadata import version
    return version("mutmut")


def format_mutation(result: dict) -> str:
    lines = ["| group | module | counted | mutants | killed | timeout | survived | untested | equivalent | score |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for module, r in result["modules"].items():
        counted = "all functions" if r["counted"] == "all" else f"{len(r['counted'])} functions"
        mark = "" if r["score"] >= result["target"] else " **(< 80 %)**"
        lines.append(f"| {r['group']} | `{module}` | {counted} | {r['mutants']} | {r['killed']} | {r['timeout']} | "
                     f"{r['survived']} | {r['no_tests']} | {len(r['equivalent'])} | {r['score']:.0%}{mark} |")
    lines += [f"| {group} | could not be measured: {error} | | | | | | | | |"
              for group, error in result.get("failed", {}).items()]
    lines.append(f"\nAll counted mutants: {result['mutants']}, score {result['score']:.1%} "
                 f"(mutmut {result['mutmut']}; timeouts count as killed; target ≥ {result['target']:.0%} per module).")
    unmutated = [f"`{m.removeprefix('cotlab/')}` {', '.join(r['unmutated'])}" for m, r in result["modules"].items()
                 if r["unmutated"]]
    if unmutated:
        lines.append("\nFunctions mutmut left without a mutant (properties and other decorated functions, or nothing to mutate; the tests' "
                     "deliberate breaks guard them instead): " + "; ".join(unmutated) + ".")
    by_reason: dict[str, list[str]] = {}
    for r in result["modules"].values():
        for mutant, reason in sorted(r["equivalent"].items()):
            module, number = MUTANT.match(mutant)["module"], mutant.rsplit("_", 1)[1]
            by_reason.setdefault(reason, []).append(f"{module.removeprefix('cotlab.')}.{function_of(mutant)} {number}")
    if by_reason:
        lines.append("\nSurvivors named equivalent (no input can tell them apart; still counted as survivors):\n")
        lines += [f"- {reason}: {', '.join(names)}" for reason, names in by_reason.items()]
    return "\n".join(lines) + "\n"


def _arguments(parser: argparse.ArgumentParser) -> None:
    only_option(parser, f"groups ({', '.join(GROUPS)})")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")


BENCH = Bench(_arguments, bench_mutation, format_mutation,
              "mutmut over the number-making modules: the share of mutants the tests kill, per module (target ≥ 80 %)")
