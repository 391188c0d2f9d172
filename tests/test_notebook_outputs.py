"""The committed notebooks are what a reader sees: their outputs must be clean.

No tracebacks or warnings, no Lightning banners, tips or model summaries, no progress bars left
unfinished, no paths of the machine that ran them, no stray dict dumps, every code cell executed in
order — and no papermill injected-parameters cell: opened in JupyterLab, a notebook runs its widgets.
"""
import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LITTER = {
    "a traceback": re.compile(r"Traceback|Error:"),
    "a warning": re.compile(r"Warning\b|warn\(", re.I),
    "a Lightning banner or tip": re.compile(r"(GPU|TPU|HPU) available|💡|LOCAL_RANK|litlogger|Trainer\(|`Trainer"),
    "a model summary": re.compile(r"\|\s*Name\s*\|\s*Type|Trainable params|Total estimated model params"),
    "an unfinished progress bar": re.compile(r"\b(?!100)\d{1,2}%\|"),
    "a path of the machine": re.compile(r"(?<![\w.])/(work|home|tmp|root|usr|opt|Users)/|site-packages"),
}


def text_of(output: dict) -> str:
    if output["output_type"] == "stream":
        return output["text"] if isinstance(output["text"], str) else "".join(output["text"])
    data = output.get("data", {})
    text = data.get("text/plain", data.get("text/markdown", ""))
    return text if isinstance(text, str) else "".join(text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_clean(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    injected = [i for i, c in enumerate(code) if "injected-parameters" in c["metadata"].get("tags", [])]
    assert not injected, "no injected parameters: opened in JupyterLab, the viewers run as widgets (make notebooks)"
    assert "interactive = True" in "".join(code[0]["source"]), "the parameters cell defaults to the widgets"
    counts = [c["execution_count"] for c in code]
    assert all(counts) and counts == sorted(counts), "every code cell executed, in order"
    for c in code:
        where = f"{path.name}, In [{c['execution_count']}]"
        for output in c["outputs"]:
            assert output["output_type"] != "error", f"{where}: an error"
            assert not (output["output_type"] == "stream" and output["name"] == "stderr"), \
                f"{where}: stderr output: {text_of(output)[:200]!r}"
            text = text_of(output)
            for what, pattern in LITTER.items():
                found = pattern.search(text)
                assert not found, f"{where}: {what}: {text[max(found.start() - 60, 0):found.end() + 60]!r}"
            if output["output_type"] == "execute_result":
                assert not text.lstrip().startswith("{'"), f"{where}: a stray dict dump (end the line with ;)"


def asserts_of(path: Path) -> list[tuple[ast.Assert, bool]]:
    """Every assert of a notebook's code, and whether it runs only outside the smoke profile."""
    found = []

    def visit(node: ast.AST, real_size_only: bool) -> None:
        if isinstance(node, ast.Assert):
            found.append((node, real_size_only))
        if isinstance(node, ast.If) and _compares_profile_to_smoke(node.test):
            outside_smoke_first = isinstance(node.test.ops[0], ast.NotEq)  # if profile != "smoke": …
            for child in node.body:
                visit(child, real_size_only or outside_smoke_first)
            for child in node.orelse:
                visit(child, real_size_only or not outside_smoke_first)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, real_size_only)

    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            visit(ast.parse("".join(cell["source"])), False)
    return found


def _compares_profile_to_smoke(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "profile"
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq)) and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "smoke")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_asserts_its_claims_at_the_real_size(path):
    """Each notebook checks what its prose claims where the sizes can show it: at least one assert that
    runs in the cpu (and gpu) profile only — a stated target or a "you should see" range."""
    assert any(real_size_only for _, real_size_only in asserts_of(path)), \
        f"{path.name}: no assert under `if profile != \"smoke\":` checks a claim of the text at the real size"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_assert_says_what_it_expected(path):
    """A failing assert in a notebook tells the reader what was expected (and, in an f-string, what was measured)."""
    silent = [ast.unparse(node)[:80] for node, _ in asserts_of(path) if node.msg is None]
    assert not silent, f"{path.name}: asserts without a message: {silent}"
