"""``cotlab generate … --verifier NAME`` for every verifier of the table, on the shipped maskgit and
the shipped verifiers: what the command writes is the search's own choice and cost."""
import json

import numpy as np
import pytest
from PIL import Image

from cotlab.cli import main
from cotlab.harness import load_checkpoint
from cotlab.metrics import to_uint8
from cotlab.sampling import path_seed
from cotlab.verification import search

META = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}],
        "prompt": "a photo of a red circle"}
CANDIDATES, STEPS = 3, 2


@pytest.fixture(scope="module")
def maskgit():
    return load_checkpoint("maskgit")


@pytest.mark.parametrize("name", list(search.VERIFIERS))
def test_generate_with_each_verifier_writes_the_searchs_choice_and_cost(name, maskgit, tmp_path):
    """The image written is the one ``search.run`` picks among the same seeds (path c of sample 0 of
    prompt 0: path_seed(0, 0, 0, c)); best-of-N costs N·T·2 passes and N calls, the step-level
    search T·2 passes (one shared a step) and N·T calls."""
    metadata = tmp_path / "metadata.jsonl"
    metadata.write_text(json.dumps(META) + "\n")
    out = tmp_path / "out"
    assert main(["generate", "maskgit", "--metadata", str(metadata), "--outdir", str(out), "--n-samples", "1",
                 "--steps", str(STEPS), "--verifier", name, "--candidates", str(CANDIDATES)]) == 0
    [cost] = json.loads((out / "00000" / "search.json").read_text())
    checkpoint = search.VERIFIERS[name].checkpoint
    expected = search.run(name, maskgit, META, [path_seed(0, 0, 0, c) for c in range(CANDIDATES)],
                          load_checkpoint(checkpoint) if checkpoint else None, steps=STEPS)
    assert cost == {"passes": expected.passes, "verifier_calls": expected.calls, "chosen": expected.chosen}
    written = np.asarray(Image.open(out / "00000" / "samples" / "0000.png").convert("RGB"))
    assert np.array_equal(written, to_uint8(expected.image[None])[0])
    if search.VERIFIERS[name].search is search.best_of_n:
        assert (cost["passes"], cost["verifier_calls"]) == (CANDIDATES * STEPS * 2, CANDIDATES)
    if search.VERIFIERS[name].search is search.step_search:
        assert (cost["passes"], cost["verifier_calls"]) == (STEPS * 2, CANDIDATES * STEPS)
