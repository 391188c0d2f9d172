"""Bad input is refused before work starts: one line naming the fix, exit status 2, no traceback, and
nothing already written touched. Each case below is also a row of the README's table of bad inputs
(``python tests/test_bad_input.py`` rewrites it; a test checks it is current). Property-based tests
(hypothesis) try the prompt parser, the scorer's rules and the options on inputs nobody wrote down.
"""
from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from cotlab import options
from cotlab.cli import main
from cotlab.errors import CotlabError
from cotlab.geneval import judge, truth, validate_metadata
from cotlab.shapes import COLORS, SHAPES, Obj, Scene, World
from cotlab.widgets import PROMPTS, parse_prompt

README = Path(__file__).resolve().parent.parent / "README.md"
PROMPT = {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}
OTHER = {"tag": "single_object", "include": [{"class": "square", "count": 1}], "prompt": "a photo of a square"}


def png(size=32, mode="RGB") -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.new(mode, (size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def layout(image: bytes = png(), n: int = 2, second: int | None = None) -> dict[str, bytes | str]:
    """A folder in GenEval's layout (two prompts), its first image ``image``."""
    files: dict[str, bytes | str] = {}
    for index, meta in enumerate((PROMPT, OTHER)):
        files[f"images/{index:05d}/metadata.jsonl"] = json.dumps(meta) + "\n"
        for j in range(n if index == 0 or second is None else second):
            files[f"images/{index:05d}/samples/{j:04d}.png"] = image if (index, j) == (0, 0) else png()
    return files


GOOD = {"prompts.jsonl": json.dumps(PROMPT) + "\n"}
GEN = "generate maskgit --metadata prompts.jsonl --outdir out"

# (what is wrong, the command after `cotlab`, the files it finds, a phrase its one line must hold)
CASES = [
    ("a count of zero", f"{GEN} --steps 0", GOOD, "1 or more"),
    ("a negative count", f"{GEN} --n-samples -1", GOOD, "1 or more"),
    ("a count that is not a number", f"{GEN} --steps many", GOOD, "not a whole number"),
    ("no candidates", f"{GEN} --verifier orm --candidates 0", GOOD, "1 or more"),
    ("guidance NaN", f"{GEN} --cfg nan", GOOD, "finite"),
    ("negative guidance", f"{GEN} --cfg -2", GOOD, "0 or more"),
    ("a negative seed", f"{GEN} --seed -1", GOOD, "not a seed"),
    ("a seed beyond 32 bits", f"{GEN} --seed 4294967296", GOOD, "not a seed"),
    ("checkpoints never", "train clip --checkpoint-every 0", {}, "1 or more"),
    ("a benchmark count of zero", "bench verification --candidates 0", {}, "1 or more"),
    ("an unknown generator", GEN.replace("maskgit", "nosuch"), GOOD, "cotlab train nosuch"),
    ("a model that is not a generator", GEN.replace("maskgit", "clip"), GOOD, "not a generator"),
    ("an unknown verifier", f"{GEN} --verifier nosuch", GOOD, "invalid choice"),
    ("a solver the generator lacks", f"{GEN} --solver sde", GOOD, "drop --solver"),
    ("an unknown model to train", "train nosuch --profile smoke", {}, "choose one of"),
    ("an unknown checkpoint to evaluate", "evaluate nosuch", {}, "cotlab train nosuch"),
    ("an unknown profile", "run --profile huge", {}, "invalid choice"),
    ("an unknown notebook", "run --only 09", {}, "choose from"),
    ("an unknown notebook parameter", "run --only 00 -p nosuch 3", {}, "choose from"),
    ("an unknown benchmark", "bench nosuch", {}, "invalid choice"),
    ("an unknown command", "frobnicate", {}, "invalid choice"),
    ("no prompt file", GEN.replace("prompts.jsonl", "missing.jsonl"), {}, "no prompt file"),
    ("an empty prompt file", GEN, {"prompts.jsonl": ""}, "holds no prompts"),
    ("a line that is not JSON", GEN, {"prompts.jsonl": "a photo of a cat\n"}, "not valid JSON"),
    ("a line that is not an object", GEN, {"prompts.jsonl": "[1, 2]\n"}, "JSON object"),
    ("a prompt missing its clauses", GEN, {"prompts.jsonl": '{"tag": "single_object", "prompt": "a circle"}\n'},
     "missing 'include'"),
    ("an unknown shape", GEN, {"prompts.jsonl": json.dumps({**PROMPT, "include": [{"class": "hexagon", "count": 1}]})},
     "unknown shape"),
    ("an unknown colour", GEN, {"prompts.jsonl": json.dumps(
        {**PROMPT, "include": [{"class": "circle", "count": 1, "color": "teal"}]})}, "unknown colour"),
    ("a count no scene holds", GEN, {"prompts.jsonl": json.dumps({**PROMPT, "include": [{"class": "circle", "count": 20}]})},
     "1 … 16"),
    ("an unknown tag", GEN, {"prompts.jsonl": json.dumps({**PROMPT, "tag": "texture"})}, "unknown tag"),
    ("a folder that is not there", "geneval score nowhere", {}, "not in GenEval's layout"),
    ("a folder with no prompt folders", "geneval score images", {"images/notes.txt": "x"}, "not in GenEval's layout"),
    ("a prompt folder without metadata", "geneval score images", {"images/00000/samples/0000.png": png()},
     "no metadata.jsonl"),
    ("a greyscale image", "geneval score images", layout(png(mode="L")), "RGB"),
    ("an image of the wrong size", "geneval score images", layout(png(64)), "32x32"),
    ("a truncated image", "geneval score images", layout(png()[:60]), "not a readable image"),
    ("missing samples", "geneval score images", layout(second=1), "interrupted generation"),
    ("an output folder that is a file", GEN, {**GOOD, "out": "I am a file"}, "is a file"),
    ("an output folder holding other prompts", GEN, {**GOOD, "out/00000/metadata.jsonl": json.dumps(OTHER) + "\n",
                                                    "out/00000/samples/0000.png": png()}, "holds other prompts"),
    ("a training folder holding something else", "train clip --profile smoke --out busy", {"busy/notes.txt": "x"},
     "choose a new --out"),
    ("a JSON output that is a folder", "geneval score images --json images", layout(), "is a folder"),
]


def write(root: Path, files: dict[str, bytes | str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)


def refusal(command: str, files: dict, root: Path) -> tuple[int, str, str]:
    """Run ``cotlab COMMAND`` in the folder ``root`` holding ``files``, in the smoke profile:
    (exit status, stdout, stderr)."""
    write(root, files)
    out, err, cwd, profile = io.StringIO(), io.StringIO(), os.getcwd(), os.environ.get("COTLAB_PROFILE")
    os.chdir(root)
    os.environ["COTLAB_PROFILE"] = "smoke"
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(command.split())
    finally:
        os.chdir(cwd)
        os.environ.pop("COTLAB_PROFILE") if profile is None else os.environ.update(COTLAB_PROFILE=profile)
    return code, out.getvalue(), err.getvalue()


def readme_row(what: str, command: str, line: str, root: Path) -> str:
    message = line.removeprefix("cotlab: error: ").replace(f"{root}/", "").replace("|", "\\|")
    return f"| {what} | `cotlab {command}` | {message} |"


def readme_block() -> list[str]:
    text = README.read_text()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip().splitlines()[2:]


BEGIN, END = "<!-- bad-input -->", "<!-- /bad-input -->"


@pytest.mark.parametrize("what, command, files, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(what, command, files, phrase, tmp_path):
    code, out, err = refusal(command, files, tmp_path)
    lines = err.strip().splitlines()
    assert code == 2, f"{what}: exit status {code}, stderr {err[-500:]!r}"
    assert len(lines) == 1 and lines[0].startswith("cotlab: error: "), f"{what}: not one line: {err[-800:]!r}"
    assert phrase in lines[0], f"{what}: {lines[0]!r} lacks {phrase!r}"
    assert "Traceback" not in out + err
    written = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    given = {name: c if isinstance(c, bytes) else c.encode() for name, c in files.items()}
    assert written == given, f"{what}: files were written or changed: {set(written) ^ set(given)}"
    row = readme_row(what, command, lines[0], tmp_path)
    assert row in readme_block(), f"the README's table of bad inputs lacks: {row} (python tests/test_bad_input.py)"


def test_the_readme_table_lists_exactly_these_cases():
    assert len(readme_block()) == len(CASES), "python tests/test_bad_input.py rewrites the README's table"


if __name__ == "__main__":  # rewrite the README's table from the cases
    import tempfile

    rows = ["| bad input | command | what `cotlab` answers (exit status 2) |", "|---|---|---|"]
    for what, command, files, _ in CASES:
        with tempfile.TemporaryDirectory() as root:
            _, _, err = refusal(command, files, Path(root))
            rows.append(readme_row(what, command, err.strip().splitlines()[-1], Path(root)))
    text = README.read_text()
    text = text[:text.index(BEGIN) + len(BEGIN)] + "\n" + "\n".join(rows) + "\n" + text[text.index(END):]
    README.write_text(text)
    sys.exit(print(f"README.md: {len(CASES)} bad inputs"))


# ---- properties (hypothesis) ------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
CLAUSE = st.fixed_dictionaries({"class": st.sampled_from(SHAPES) | JSON, "count": st.integers(-2, 20) | JSON},
                               optional={"color": st.sampled_from(COLORS) | JSON, "position": JSON})
NEAR_PROMPT = st.fixed_dictionaries({"tag": st.sampled_from(list({m["tag"] for m in PROMPTS.values()})) | JSON,
                                     "include": st.lists(CLAUSE, max_size=3) | JSON, "prompt": st.text() | JSON},
                                    optional={"exclude": st.lists(CLAUSE, max_size=2) | JSON})


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, NEAR_PROMPT))
def test_the_prompt_schema_accepts_or_refuses_with_a_cotlab_error(meta):
    try:
        assert validate_metadata(meta, "line 1") is meta
    except CotlabError as e:
        assert str(e).startswith("line 1: ") and "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(PROMPTS)), st.lists(st.sampled_from([" ", "  ", "\t"]), min_size=1, max_size=8),
       st.booleans())
def test_every_prompt_of_the_grammar_parses_whatever_its_case_and_spacing(text, gaps, upper):
    words = text.split()
    spaced = "".join(w + gaps[i % len(gaps)] for i, w in enumerate(words))
    assert parse_prompt(spaced.upper() if upper else spaced) == PROMPTS[text]
    assert validate_metadata(PROMPTS[text], "grammar") is PROMPTS[text]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_other_text_is_refused_with_the_grammar(text):
    if " ".join(text.lower().split()) in PROMPTS:
        return
    with pytest.raises(CotlabError, match="grammar"):
        parse_prompt(text)


SCENES = st.dictionaries(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                         st.tuples(st.sampled_from(SHAPES), st.sampled_from(COLORS)), max_size=16).map(
    lambda cells: Scene(tuple(Obj(s, c, r, k) for (r, k), (s, c) in sorted(cells.items()))))


@settings(max_examples=150, deadline=None)
@given(SCENES, st.sampled_from(sorted(PROMPTS)))
def test_the_scorer_judges_a_drawn_scene_as_its_own_objects_say(scene, text):
    """GenEval's rules (counts with their exclude clause, positions with their margin, colours) give
    the same verdict on the rendered pixels as on the scene's own list of objects. (A clause's colour
    or position is judged on the ``count`` most confident objects of its class, as GenEval does; with
    more of that class in the scene, which ones is a tie between equally clear objects, not a property
    of the scene, so such scenes are left out.)"""
    world = World()
    meta = PROMPTS[text]
    shapes = [o.shape for o in scene.objects]
    assume(not any(shapes.count(r["class"]) > r["count"] for r in meta["include"]
                   if "color" in r or meta["tag"] == "position"))
    assert judge(world.render(scene), meta, world)[0] == truth(scene, meta, world)[0]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=10)))
def test_the_options_accept_exactly_their_ranges(text):
    import argparse
    import math

    def read(kind):
        try:
            return kind(text)
        except argparse.ArgumentTypeError:
            return None

    try:
        number = int(text)
    except ValueError:
        number = None
    assert read(options.count) == (number if number is not None and number >= 1 else None)
    assert read(options.seed) == (number if number is not None and 0 <= number < 2**32 else None)
    try:
        real = float(text)
    except ValueError:
        real = None
    ok = real is not None and math.isfinite(real) and real >= 0
    assert read(options.weight) == (real if ok else None)
