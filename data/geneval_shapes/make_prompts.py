"""Write the Shapes GenEval benchmark prompts: ``python data/geneval_shapes/make_prompts.py``.

``evaluation_metadata.jsonl``: 553 prompts in GenEval's proportions (80 single_object, 99 two_object,
80 counting, 94 colors, 100 position, 100 color_attr). The world is small (single_object has only
four distinct prompts), so each tag cycles through its distinct prompts in a seeded order: a prompt
repeats only after all of its tag's prompts have appeared. No prompt names a held-out binding.

``heldout_metadata.jsonl``: 124 prompts (24 colors, 100 color_attr) that each name at least one
colour-shape binding (``cotlab.shapes.HELDOUT_BINDINGS``) that no training caption ever contains.
Re-running this script reproduces both files byte for byte (a test checks it).
"""
import json
from pathlib import Path

import numpy as np

from cotlab.shapes import GENEVAL_TAG_COUNTS, TAGS, all_prompts, is_heldout

SEED = 43  # GenEval's create_prompts.py seed


def cycle(prompts: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` prompts: shuffled passes over ``prompts``."""
    out = []
    while len(out) < n:
        out += [prompts[i] for i in rng.permutation(len(prompts))]
    return out[:n]


def main(folder: Path = Path(__file__).resolve().parent) -> None:
    rng = np.random.default_rng(SEED)
    bench, heldout = [], []
    for tag in TAGS:
        prompts = all_prompts(tag)
        bench += cycle([m for m in prompts if not is_heldout(m)], GENEVAL_TAG_COUNTS[tag], rng)
        held = [m for m in prompts if is_heldout(m)]
        if held:
            heldout += cycle(held, {"colors": 24, "color_attr": 100}[tag], rng)
    for name, prompts in (("evaluation_metadata.jsonl", bench), ("heldout_metadata.jsonl", heldout)):
        (folder / name).write_text("".join(json.dumps(m) + "\n" for m in prompts))
        print(f"wrote {len(prompts)} prompts to {folder / name}")


if __name__ == "__main__":
    main()
