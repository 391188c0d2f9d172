"""The Shapes CLIP: tokenizer, encoders, loss, CLIPScore and caption accuracy (smoke sizes)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cotlab.clip import (SPECIAL_TOKENS, ShapesCLIP, ShapesCLIPConfig, build_tokenizer, caption_accuracy,
                         contrast_pair, vocabulary)
from cotlab.geneval import truth
from cotlab.metrics import to_uint8
from cotlab.shapes import COLORS, NUMBERS, OPPOSITE, PLURALS, RELATIONS, SHAPES, TAGS, World, all_prompts, make_batch
from cotlab.stats import bootstrap_values, proportion_interval


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Smoke-sized models run fastest on one thread; on a busy machine two threads can be 50× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ShapesCLIP(ShapesCLIPConfig.for_profile("smoke"))


@pytest.fixture(scope="module")
def batch():
    return make_batch(World(), np.random.default_rng(0), 16)


def test_vocabulary_is_the_worlds_words_and_fixed():
    words = {"a", "photo", "of", "and", *SHAPES, *PLURALS.values(), *COLORS, *NUMBERS.values(),
             *" ".join(RELATIONS).split()}
    assert vocabulary() == [*SPECIAL_TOKENS, *sorted(words)]
    assert len(build_tokenizer()) == len(build_tokenizer()) == len(SPECIAL_TOKENS) + len(words)
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()


def test_tokenizer_round_trip_and_padding():
    tok = build_tokenizer(max_length=16)
    prompt = "a photo of a red circle and a blue square"
    ids = tok(prompt, padding="max_length", truncation=True)["input_ids"]
    assert len(ids) == 16
    assert ids[0] == tok.bos_token_id and ids[11] == tok.eos_token_id and ids[12:] == [tok.pad_token_id] * 4
    assert tok.decode(ids, skip_special_tokens=True) == prompt
    assert tok.eos_token_id != 2  # transformers pools at the largest id when eos_token_id == 2


def test_unknown_word_is_unk_and_long_text_keeps_eos():
    tok = build_tokenizer(max_length=8)
    ids = tok("A photo of a DOG", padding="max_length", truncation=True)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[:7]) == ["[BOS]", "a", "photo", "of", "a", "[UNK]", "[EOS]"]
    ids = tok("a " * 20, padding="max_length", truncation=True)["input_ids"]
    assert len(ids) == 8 and ids[-1] == tok.eos_token_id


def test_encode_text_shapes_and_mask(model):
    D, N = model.config.width, model.config.max_length
    pooled, hidden, mask = model.encode_text(["a photo of a circle", "a photo of two squares", "dog"])
    assert pooled.shape == (3, D) and hidden.shape == (3, N, D) and mask.shape == (3, N)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert mask.sum(1).tolist() == [7, 7, 3]  # [BOS] words [EOS]


def test_padding_does_not_change_the_pooled_embedding(model):
    """The text tower is causal and pools at [EOS], so what follows [EOS] cannot matter."""
    short = ShapesCLIP(ShapesCLIPConfig.for_profile("smoke", max_length=12))
    short.load_state_dict({k: v[:12] if k.endswith("position_embedding.weight") and "text" in k else v
                           for k, v in model.state_dict().items()})
    captions = ["a photo of a circle", "a photo of a red circle and a blue square"]
    with torch.no_grad():
        assert torch.allclose(model.encode_text(captions)[0], short.encode_text(captions)[0], atol=1e-5)


def test_encode_image_is_unit_and_rejects_wrong_size(model, batch):
    with torch.no_grad():
        u = model.encode_image(batch["image"])
    assert u.shape == (16, model.config.width)
    assert torch.allclose(u.norm(dim=-1), torch.ones(16), atol=1e-5)
    with pytest.raises(ValueError, match=r"World\(image_size=32\)"):
        model.encode_image(torch.rand(2, 3, 64, 64))


def test_loss_falls_on_a_fixed_batch(batch):
    """The loss passes the plateau at ln B (all embeddings alike) and nears zero; with lr 2e-3 some
    seeds stay on the plateau for 80 steps."""
    torch.manual_seed(0)
    model = ShapesCLIP(ShapesCLIPConfig.for_profile("smoke"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(60):
        loss, accuracy = model.contrastive_loss(batch["image"], batch["caption"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert 0 <= accuracy.item() <= 1


def test_loss_is_clips_and_repeated_captions_are_interchangeable(model, batch):
    images, labels = batch["image"][:4], torch.arange(4)
    with torch.no_grad():
        distinct = ["a photo of a circle", "a photo of a square", "a photo of two circles",
                    "a photo of a red circle"]
        u, v = model.encode_image(images), model.encode_text(distinct)[0]
        logits = model.clip.logit_scale.exp() * u @ v.T
        clip_loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        loss, _ = model.contrastive_loss(images, distinct)
        assert loss.item() == pytest.approx(clip_loss.item(), rel=1e-5)
        # images 0 and 2 share a caption: both are positives of it, so swapping them changes nothing
        repeated = ["a photo of a circle", "a photo of a square", "a photo of a circle",
                    "a photo of a red circle"]
        loss, _ = model.contrastive_loss(images, repeated)
        swapped, _ = model.contrastive_loss(images[[2, 1, 0, 3]], repeated)
        assert loss.item() == pytest.approx(swapped.item(), rel=1e-5)


def with_stand_in_towers(image_vectors, text_vectors: dict, scale: float = 1.0) -> ShapesCLIP:
    """A ShapesCLIP whose towers return known unit vectors: image i (passed as its index) ->
    image_vectors[i], a caption -> text_vectors[caption]; e^t = ``scale``."""
    model = ShapesCLIP(ShapesCLIPConfig.for_profile("smoke"))
    model.encode_image = lambda index: torch.tensor(image_vectors)[index]
    model.encode_text = lambda captions: (torch.tensor([text_vectors[c] for c in captions]), None, None)
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(scale))
    return model


def test_contrastive_loss_of_known_embeddings():
    """u = (1, 0), (0.8, 0.6); v = (1, 0), (0, 1); e^t = 2: S = [[2, 0], [1.6, 1.2]]. Each row and each
    column of S is a two-way softmax, −log softmax_k = log(1 + e^{S_other − S_k}):
    rows: log(1 + e^−2), log(1 + e^0.4); columns: log(1 + e^−0.4), log(1 + e^−1.2); L is their mean.
    Image 1's best caption is caption 0: accuracy ½."""
    model = with_stand_in_towers([[1.0, 0.0], [0.8, 0.6]], {"x": [1.0, 0.0], "y": [0.0, 1.0]}, scale=2.0)
    loss, accuracy = model.contrastive_loss(torch.arange(2), ["x", "y"])
    expected = sum(math.log1p(math.exp(d)) for d in (-2.0, 0.4, -0.4, -1.2)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6) and accuracy.item() == 0.5
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(1e4))
    capped, _ = model.contrastive_loss(torch.arange(2), ["x", "y"])  # e^t is capped at 100: S = 100 u·v
    expected = sum(math.log1p(math.exp(d)) for d in (-100.0, 20.0, -20.0, -60.0)) / 4
    assert capped.item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_makes_repeated_captions_shared_positives():
    """Captions x, y, x: images 0 and 2 have the targets P = (½, 0, ½), image 1 (0, 1, 0); P is symmetric, so
    the caption side has the same targets. Image 2's best caption is caption 0, the same words: correct."""
    images = [[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]
    model = with_stand_in_towers(images, {"x": [1.0, 0.0], "y": [0.0, 1.0]}, scale=3.0)
    loss, accuracy = model.contrastive_loss(torch.arange(3), ["x", "y", "x"])
    S = 3.0 * torch.tensor(images) @ torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]).T  # (3, 3): S_ij = e^t u_i·v_j
    P = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    expected = (-(P * S.log_softmax(1)).sum(1).mean() - (P * S.T.log_softmax(1)).sum(1).mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and accuracy.item() == 1.0


def test_score_is_100_times_the_cosine_clipped_at_zero():
    """cos = 0.6, 1 and −1: CLIPScore 60, 100 and 0."""
    model = with_stand_in_towers([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]], {"a": [0.6, 0.8], "b": [-1.0, 0.0]})
    assert model.score(torch.arange(3), ["a", "a", "b"]).tolist() == pytest.approx([60.0, 100.0, 0.0], abs=1e-5)
    assert model.score(torch.arange(3), "a").tolist() == pytest.approx([60.0, 100.0, 60.0], abs=1e-5)  # one for all


def test_loss_of_a_batch_logs_accuracy_and_temperature(model, batch):
    with torch.no_grad():
        loss, logs = model.loss(batch)
        assert loss.item() == model.contrastive_loss(batch["image"], batch["caption"])[0].item()
    assert set(logs) == {"acc", "temperature"}
    assert logs["temperature"].item() == pytest.approx(model.clip.logit_scale.exp().item())


def test_weight_decay_falls_on_matrices_only(model):
    optimizer = model.configure_optimizers()["optimizer"]
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == model.config.weight_decay and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert decayed["betas"] == (0.9, 0.98)


def test_score_of_the_real_towers_is_their_cosine(model, batch):
    with torch.no_grad():
        cos = (model.encode_image(batch["image"]) * model.encode_text(batch["caption"])[0]).sum(-1)
    assert torch.allclose(model.score(batch["image"], batch["caption"]), 100 * cos.clamp(min=0), atol=1e-4)
    with pytest.raises(ValueError, match="one caption per image"):
        model.score(batch["image"][:3], ["a photo of a circle"] * 2)


def changed_fields(meta: dict, wrong: dict) -> set[tuple[int, str]]:
    """The (clause, key) pairs of the include clauses where two prompts differ."""
    assert len(meta["include"]) == len(wrong["include"])
    return {(i, key) for i, (a, b) in enumerate(zip(meta["include"], wrong["include"]))
            for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


CHANGED = {"single_object": [{(0, "class")}], "two_object": [{(0, "class")}, {(1, "class")}],
           "counting": [{(0, "count")}], "colors": [{(0, "color")}], "position": [{(1, "position")}],
           "color_attr": [{(0, "color"), (1, "color")}]}


@pytest.mark.parametrize("tag", TAGS)
def test_contrast_pair_changes_only_the_tasks_attribute_and_is_true_then_false(tag):
    rng, world = np.random.default_rng(0), World()
    for _ in range(10):
        scene, meta, wrong = contrast_pair(world, rng, tag)
        assert truth(scene, meta, world)[0] and not truth(scene, wrong, world)[0]
        assert wrong["tag"] == meta["tag"] == tag and changed_fields(meta, wrong) in CHANGED[tag]
        a, b = meta["include"], wrong["include"]
        if tag == "position":
            assert b[1]["position"][0] == OPPOSITE[a[1]["position"][0]]
        if tag == "color_attr":
            assert (b[0]["color"], b[1]["color"]) == (a[1]["color"], a[0]["color"])


SCENES = {}  # rendered image bytes -> scene, filled by RememberingWorld
PROMPTS = {m["prompt"]: m for tag in TAGS for m in all_prompts(tag)}


class RememberingWorld(World):
    """The default world, remembering the scene of every image it renders."""

    def render(self, scene):
        image = super().render(scene)
        SCENES[image.tobytes()] = scene
        return image


class StandInCLIP(torch.nn.Module):
    """Knows the truth, and tells it where ``honest(scene, meta)``: every image embeds as (1,), a caption
    as (1,) when the model says it is true of its image, (0.5,) when it says false. It says the truth
    where honest, the opposite elsewhere, so it ranks a pair's true caption first exactly where honest;
    ``wins[tag]`` records, pair by pair, whether it did (1.0) or not (0.0)."""

    def __init__(self, honest):
        super().__init__()
        self.honest, self.scenes, self.wins = honest, [], {}

    def encode_image(self, images):
        self.scenes = [SCENES[image.tobytes()] for image in to_uint8(images)]
        return torch.ones(len(images), 1)

    def encode_text(self, captions):
        says_true = []
        for scene, meta in zip(self.scenes, (PROMPTS[c] for c in captions)):
            true, honest = truth(scene, meta)[0], self.honest(scene, meta)
            if true:  # the pair's true caption: one per pair
                self.wins.setdefault(meta["tag"], []).append(float(honest))
            says_true.append(true == honest)
        return 0.5 + 0.5 * torch.tensor(says_true, dtype=torch.float)[:, None], None, None


def test_caption_accuracy_is_one_on_exactly_the_tags_the_model_gets_right():
    model = StandInCLIP(lambda scene, meta: meta["tag"] in ("counting", "colors")).train()
    result = caption_accuracy(model, n_per_tag=8, world=RememberingWorld())
    assert {tag: result[tag] for tag in TAGS} == {tag: float(tag in ("counting", "colors")) for tag in TAGS}
    assert result["mean"] == pytest.approx(2 / 6)  # the unweighted mean over the six tasks
    assert result["interval"]["counting"] == pytest.approx(proportion_interval(8, 8))  # Wilson's, 8 of 8
    assert result["interval"]["position"] == pytest.approx(proportion_interval(0, 8))
    assert result["interval"]["mean"] == pytest.approx([2 / 6, 2 / 6])  # every pair within a task agrees
    assert model.training  # left as it was found


def test_caption_accuracy_intervals_resample_pairs_within_each_tag():
    """Right on the scenes with an even number of objects: per tag the share of such pairs, Wilson's
    interval of it, and for the mean the quantiles of the mean over tags of each tag's bootstrap."""
    model = StandInCLIP(lambda scene, meta: len(scene.objects) % 2 == 0)
    result = caption_accuracy(model, n_per_tag=8, world=RememberingWorld())
    wins = {tag: np.array(model.wins[tag]) for tag in TAGS}
    assert 0 < np.mean(wins["counting"]) < 1  # a spread to resample
    assert {tag: result[tag] for tag in TAGS} == {tag: pytest.approx(w.mean()) for tag, w in wins.items()}
    assert result["mean"] == pytest.approx(np.mean([w.mean() for w in wins.values()]))
    assert result["interval"]["counting"] == pytest.approx(proportion_interval(wins["counting"].sum(), 8))
    bootstrapped_mean = np.mean([bootstrap_values(np.mean, w) for w in wins.values()], axis=0)  # (resamples,)
    assert result["interval"]["mean"] == pytest.approx(list(np.quantile(bootstrapped_mean, [0.025, 0.975])))
    assert caption_accuracy(model, n_per_tag=8, seed=1234, world=RememberingWorld()) == result  # the default seed


def test_caption_accuracy_counts_a_tie_as_half():
    """A model whose scores are all equal ties every pair: ½ per pair, so 4 of 8 per tag."""
    model = StandInCLIP(None).eval()
    model.encode_text = lambda captions: (torch.ones(len(captions), 1), None, None)
    result = caption_accuracy(model, n_per_tag=8, world=RememberingWorld())
    assert {k: result[k] for k in (*TAGS, "mean")} == {k: 0.5 for k in (*TAGS, "mean")}
    assert result["interval"]["colors"] == pytest.approx(proportion_interval(4, 8))
    assert result["interval"]["mean"] == [0.5, 0.5]
    assert not model.training


def test_caption_accuracy_of_the_smoke_model_is_seeded(model):
    result = caption_accuracy(model, n_per_tag=8)
    assert set(result) == {*TAGS, "mean", "interval"}
    assert result == caption_accuracy(model, n_per_tag=8)
    assert model.training
