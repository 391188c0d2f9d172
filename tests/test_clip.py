"""The Shapes CLIP: tokenizer, encoders, loss, CLIPScore and caption accuracy (smoke sizes)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cotlab.clip import (SPECIAL_TOKENS, ShapesCLIP, ShapesCLIPConfig, build_tokenizer, caption_accuracy,
                         vocabulary)
from cotlab.shapes import COLORS, NUMBERS, PLURALS, RELATIONS, SHAPES, TAGS, World, make_batch


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


def test_score_is_clipscore(model, batch):
    scores = model.score(batch["image"], batch["caption"])
    assert scores.shape == (16,) and ((scores >= 0) & (scores <= 100)).all()
    assert torch.equal(model.score(batch["image"][:2], "a photo of a circle"),
                       model.score(batch["image"][:2], ["a photo of a circle"] * 2))
    with pytest.raises(ValueError, match="one caption per image"):
        model.score(batch["image"][:3], ["a photo of a circle"] * 2)


def test_caption_accuracy_covers_every_tag(model):
    result = caption_accuracy(model, n_per_tag=8)
    assert set(result) == {*TAGS, "mean", "interval"}
    assert all(lo <= result[k] <= hi for k, (lo, hi) in result["interval"].items())
    assert result == caption_accuracy(model, n_per_tag=8)  # seeded
    assert model.training  # left as it was found
