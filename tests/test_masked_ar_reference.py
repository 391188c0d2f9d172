"""The token transformer's numbers against small cases with known answers: the cosine mask schedule, the
training mask and loss, classifier-free guidance, and what each decoding step commits.

The transformer itself is replaced by stand-ins with known logits (a smoke ``MaskedAR`` whose
``forward``, ``encode_images`` and ``encode_text`` are swapped), so every expected value is exact."""
import math

import pytest
import torch
from diffusers import AmusedScheduler

import cotlab.masked_ar.model
from cotlab.masked_ar.decoding import MaskGITPaths, RasterPaths, cells_to_tokens, mask_schedule
from cotlab.masked_ar.model import MaskedAR, MaskedARConfig, cosine_schedule, random_mask

K, N = 256, 16  # the smoke models' codebook (vq_f8) and tokens per image


def stand_in(order="masked", logits=None, **overrides) -> MaskedAR:
    """A smoke MaskedAR whose transformer returns ``logits(tokens, text)`` (B, N, K) and whose text
    encoder gives each caption one state, 1.0 for a caption and 0.0 for the empty one."""
    model = MaskedAR(MaskedARConfig.for_profile("smoke", order=order, **overrides)).eval()
    model.captions_seen = []

    def encode_text(captions):
        model.captions_seen.append(list(captions))
        text = torch.tensor([[1.0 if c else 0.0] for c in captions])[:, None, :]  # (B, 1, 1)
        return text, torch.zeros(len(captions), 1, dtype=torch.bool)

    model.encode_text = encode_text
    if logits is not None:
        model.forward = lambda tokens, text, pad: logits(tokens, text)
    return model


# --- schedules -----------------------------------------------------------------------------------
def test_cosine_schedule_is_the_cosine_of_a_quarter_turn():
    """γ(r) = cos(π r / 2) at r = 0, ⅓, ½, ⅔, 1: 1, √3/2, √½, ½, 0."""
    r = torch.tensor([0.0, 1 / 3, 0.5, 2 / 3, 1.0])
    assert cosine_schedule(r).tolist() == pytest.approx([1.0, math.sqrt(3) / 2, math.sqrt(0.5), 0.5, 0.0], abs=1e-6)


def test_mask_schedule_by_hand():
    """n_t = ⌊16 γ(t/T)⌋ while that commits a token: T = 4: 16 × (0.924, 0.707, 0.383) = 14.8, 11.3, 6.1;
    T = 8: 16 × (0.981, 0.924, 0.831, 0.707, 0.556, 0.383, 0.195) = 15.7, 14.8, 13.3, 11.3, 8.9, 6.1, 3.1;
    T = N: ⌊16 γ⌋ never falls by more than one a step, so n_{t−1} − 1 decides: one token a step."""
    assert mask_schedule(4, N) == [14, 11, 6, 0]
    assert mask_schedule(8, N) == [15, 14, 13, 11, 8, 6, 3, 0]
    assert mask_schedule(N, N) == list(range(N - 1, -1, -1))
    assert mask_schedule(1, N) == [0]
    assert mask_schedule(3, 3) == [2, 1, 0]  # ⌊3 × 0.866⌋ = 2, ⌊3 × 0.49999997⌋ = 1
    assert mask_schedule(3, N) == [13, 7, 0]  # ⌊16 × 0.866⌋ = 13; cos(π/3) in float32 is 0.49999997: ⌊7.9999995⌋ = 7


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 6, 8, 16])
def test_mask_schedule_counts_what_the_amused_scheduler_leaves_masked(steps):
    """diffusers' scheduler, run on flat logits (ties broken by its Gumbel noise), is the reference."""
    scheduler = AmusedScheduler(mask_token_id=K, masking_schedule="cosine")
    scheduler.set_timesteps(steps, temperature=(1.0, 1.0))
    tokens, generator, counts = torch.full((1, N), K), torch.Generator().manual_seed(0), []
    for t in scheduler.timesteps:
        tokens = scheduler.step(torch.zeros(1, N, K), t, tokens, generator=generator).prev_sample
        counts.append(int((tokens == K).sum()))
    assert counts == mask_schedule(steps, N)


def test_random_mask_masks_the_cosine_schedules_count_in_each_row():
    """n = ⌈γ(r) N⌉ for each row's r ~ U(0, 1), which ``random_mask`` draws first (so re-seeding finds it),
    at positions that differ from row to row."""
    torch.manual_seed(0)
    masked = random_mask(64, N)
    torch.manual_seed(0)
    expected = [math.ceil(N * math.cos(math.pi / 2 * r)) for r in torch.rand(64).tolist()]
    assert masked.sum(1).tolist() == expected
    assert min(expected) == 1 and max(expected) == N  # both ends of the schedule occur
    partly = masked[masked.sum(1) < N]
    assert partly.any(0).all()  # every position is masked in some partly masked row
    assert not all(torch.equal(row, torch.arange(N) < row.sum()) for row in partly)  # not always the first n


# --- the training loss ---------------------------------------------------------------------------
def nll(a: float) -> float:
    """−log p of the target whose logit is a, the other K − 1 logits 0."""
    return math.log(math.exp(a) + K - 1) - a


def smoothed_nll(a: float, eps: float = 0.1) -> float:
    """Label smoothing ε: (1 − ε)·nll + ε·(mean over the K classes of −log p_j); −log p_j = log Z − logit_j,
    so that mean is log Z − a / K."""
    log_z = math.log(math.exp(a) + K - 1)
    return (1 - eps) * nll(a) + eps * (log_z - a / K)


TARGETS = torch.arange(N)[None] + 7  # (1, N): the image's tokens k_i = i + 7
TARGET_LOGIT = torch.full((N,), -10.0)  # a at each position: far off the target …
TARGET_LOGIT[0] = 0.0  # … except position 0, every logit 0: p = 1/256 (argmax is code 0: wrong)
TARGET_LOGIT[5] = math.log(K - 1)  # … and position 5, p = 255 / 510 = ½ (argmax right)


def known_logits(tokens, text):
    logits = torch.zeros(len(tokens), N, K)
    logits[:, torch.arange(N), TARGETS[0]] = TARGET_LOGIT
    return logits


def loss_stand_in(order, monkeypatch, **overrides):
    seen = []
    model = stand_in(order, lambda tokens, text: (seen.append(tokens.clone()), known_logits(tokens, text))[1],
                     **overrides)
    model.encode_images = lambda images: TARGETS
    mask = torch.zeros(1, N, dtype=torch.bool)
    mask[0, [0, 5]] = True
    monkeypatch.setattr(cotlab.masked_ar.model, "random_mask", lambda B, N, device: mask)
    return model, seen


def test_masked_loss_counts_only_the_masked_positions(monkeypatch):
    """Masked: positions 0 and 5. L = ½ [smoothed nll at p = 1/256 + smoothed nll at p = ½]; the 14 unmasked
    positions, far off their targets, would raise it a lot. Inputs: [MASK] there, the tokens elsewhere."""
    model, seen = loss_stand_in("masked", monkeypatch, p_uncond=0.0)
    loss, logs = model.loss({"image": None, "caption": ["a photo of a circle"]})
    assert loss.item() == pytest.approx((smoothed_nll(0.0) + smoothed_nll(math.log(K - 1))) / 2, rel=1e-5)
    assert logs["accuracy"].item() == 0.5 and logs["masked_share"].item() == 2 / N
    expected_inputs = TARGETS.clone()
    expected_inputs[0, [0, 5]] = K  # [MASK]
    assert torch.equal(seen[0], expected_inputs)
    assert model.captions_seen == [["a photo of a circle"]]


def test_raster_loss_counts_every_position_of_the_shifted_input(monkeypatch):
    """Raster: inputs [START] k_1 … k_{N−1}, and the loss is the mean over all 16 positions."""
    model, seen = loss_stand_in("raster", monkeypatch, p_uncond=0.0, label_smoothing=0.0)
    loss, logs = model.loss({"image": None, "caption": ["a photo of a circle"]})
    assert loss.item() == pytest.approx((nll(0.0) + nll(math.log(K - 1)) + 14 * nll(-10.0)) / N, rel=1e-5)
    assert logs["accuracy"].item() == 1 / N and logs["masked_share"].item() == 1.0
    assert seen[0].tolist() == [[K, *TARGETS[0, :-1].tolist()]]


def test_caption_dropout_replaces_every_caption_when_p_uncond_is_one(monkeypatch):
    model, _ = loss_stand_in("masked", monkeypatch, p_uncond=1.0)
    model.loss({"image": None, "caption": ["a photo of a circle"]})
    assert model.captions_seen == [[""]]


# --- classifier-free guidance ----------------------------------------------------------------------
def test_guided_logits_are_uncond_plus_w_times_the_difference():
    """Stand-in logits ℓ = token + text state: ℓ(c) = k + (1, 2), ℓ(∅) = k + (0.5, −1). With w = 3,
    ℓ(∅) + 3 (ℓ(c) − ℓ(∅)) = k + (0.5 + 1.5, −1 + 9) = k + (2, 8); w = 1 is ℓ(c), w = 0 is ℓ(∅)."""
    model = stand_in(logits=lambda tokens, text: tokens[..., None].float() + text[:, :1])  # (B, N, 2)
    tokens = torch.tensor([[0, 10, 20]])
    cond, uncond = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.5, -1.0]]])
    both = (torch.cat([cond, uncond]), torch.zeros(2, 1, dtype=torch.bool))
    k = tokens[..., None].float()
    assert torch.equal(model.guided_logits(tokens, both, cfg=3.0), k + torch.tensor([2.0, 8.0]))
    assert torch.equal(model.guided_logits(tokens, both, cfg=0.0), k + uncond)
    assert torch.equal(model.guided_logits(tokens, (cond, torch.zeros(1, 1, dtype=torch.bool))), k + cond)  # w = 1


# --- decoding ------------------------------------------------------------------------------------
SUPPORT = torch.tensor([9, 2, 14, 5, 16, 1, 11, 7, 3, 13, 6, 15, 10, 4, 12, 8])  # m_i: a permutation of 1 … 16


def uniform_over_support(tokens, text):
    """Position i uniform over codes 0 … m_i − 1: whatever is drawn there has p = 1/m_i exactly."""
    allowed = torch.arange(K)[None] < SUPPORT[:, None]  # (N, K)
    return torch.where(allowed, 0.0, -1e4).expand(len(tokens), -1, -1)


@pytest.mark.parametrize("steps, cfg", [(4, 1.0), (4, 3.0), (1, 1.0), (N, 1.0)])
def test_maskgit_commits_the_most_confident_tokens_on_schedule(steps, cfg):
    """With no choice noise the confidence of position i is log(1/m_i), so after step t the N − n_t positions
    of smallest m_i are committed, m_i ≤ N − n_t: for T = 4, n = 14, 11, 6, 0 → m_i ≤ 2, 5, 10, 16."""
    model = stand_in(logits=uniform_over_support)
    paths = MaskGITPaths(model, ["a photo of a circle"], seeds=0, steps=steps, cfg=cfg, choice_temperature=0.0)
    before = paths.tokens.clone()
    for n in mask_schedule(steps, N):
        paths.advance()
        committed = paths.tokens[0] != K
        assert torch.equal(committed, SUPPORT <= N - n)
        assert (paths.sampled[0] < SUPPORT).all()  # every draw inside its support
        assert torch.equal(paths.tokens[0][before[0] != K], before[0][before[0] != K])  # committed tokens stay
        assert torch.equal(paths.sampled[0][committed], paths.tokens[0][committed])
        before = paths.tokens.clone()
    assert paths.done().all() and paths.passes.tolist() == [steps * (1 if cfg == 1.0 else 2)]


def test_maskgit_restore_resumes_at_the_first_step_that_leaves_fewer_masked():
    """T = 4 leaves 14, 11, 6, 0 masked: a state with m masked resumes at the first step leaving fewer."""
    paths = MaskGITPaths(stand_in(logits=uniform_over_support), ["a photo of a circle"], steps=4, cfg=1.0)
    for masked, position in [(16, 0), (14, 1), (12, 1), (11, 2), (6, 3), (1, 3), (0, 4)]:
        state = torch.where(torch.arange(N) < masked, K, 7)
        paths.restore(0, state)
        assert torch.equal(paths.tokens[0], state) and int(paths.position[0]) == position
    paths.restore(0, torch.where(torch.arange(N) < 12, K, 7))
    paths.advance()  # step 2 of 4 leaves 11 masked: exactly one more token committed, the others kept
    assert int((paths.tokens[0] == K).sum()) == 11 and (paths.tokens[0, 12:] == 7).all()


def test_maskgit_copy_state_and_redraw():
    """``copy_state`` gives rows the source's tokens, intermediate and step (each keeps its own stream);
    ``redraw`` re-masks the tokens under the chosen grid cells (one token a cell here) and resumes there."""
    paths = MaskGITPaths(stand_in(logits=uniform_over_support), ["a photo of a circle"] * 4, seeds=[1, 2, 3, 4],
                         steps=4, cfg=1.0, choice_temperature=0.0)
    paths.advance(0)
    paths.advance(0)
    paths.copy_state(0, [1, 2])
    for row in (1, 2):
        assert torch.equal(paths.tokens[row], paths.tokens[0]) and torch.equal(paths.sampled[row], paths.sampled[0])
    assert paths.position.tolist() == [2, 2, 2, 0] and (paths.tokens[3] == K).all()  # row 3 untouched
    paths.finish()
    final = paths.tokens.clone()
    cells = torch.zeros(N, dtype=torch.bool)
    cells[[0, 5]] = True
    paths.redraw(0, cells)
    assert torch.equal(paths.tokens[0] == K, cells) and torch.equal(paths.tokens[0][~cells], final[0][~cells])
    assert paths.position.tolist() == [3, 4, 4, 4]  # 2 masked: the last step (0 < 2) fills them; others done
    assert torch.equal(paths.tokens[1:], final[1:])
    paths.finish(0)
    assert (paths.tokens[0] != K).all() and torch.equal(paths.tokens[0][~cells], final[0][~cells])


def test_cells_to_tokens_covers_each_cell_with_its_block_of_tokens():
    """A 2 × 2 cell grid over a 4 × 4 token grid: each cell is a 2 × 2 block; 16 cells over 16 tokens: the same."""
    blocks = cells_to_tokens(torch.tensor([True, False, False, True]), 16).reshape(4, 4)
    assert blocks.tolist() == [[True, True, False, False], [True, True, False, False],
                               [False, False, True, True], [False, False, True, True]]
    cells = torch.arange(16) % 3 == 0
    assert torch.equal(cells_to_tokens(cells, 16), cells)
    cell_1 = cells_to_tokens(torch.arange(16) == 1, 64).reshape(8, 8)  # cell (0, 1) over an 8 × 8 token grid
    assert cell_1.nonzero().tolist() == [[0, 2], [0, 3], [1, 2], [1, 3]]


def test_maskgit_sampling_temperature_near_zero_draws_the_most_likely_code():
    """Logit 1 on code 3i mod K at position i, 0 elsewhere: divided by τ = 10⁻³ the draw is certain."""
    target = (3 * torch.arange(N)) % K

    def peaked(tokens, text):
        return torch.nn.functional.one_hot(target, K).float().expand(len(tokens), -1, -1)

    paths = MaskGITPaths(stand_in(logits=peaked), ["a photo of a circle"] * 2, seeds=[1, 2], steps=4, cfg=2.0,
                         sample_temperature=1e-3)
    paths.finish()
    assert paths.tokens.tolist() == [target.tolist()] * 2


def next_code(tokens, text):
    """Raster stand-in: after input token x (K = [START]) comes (x + 1) mod K, with logit 1 (others 0)."""
    return torch.nn.functional.one_hot((tokens + 1) % K, K).float()


def test_raster_decoding_writes_each_token_after_the_one_before():
    """τ = 10⁻³: k_1 = ([START] + 1) mod K = 1, then k_{i+1} = k_i + 1. After 5 steps the intermediate
    image shows 1 … 5, then the last pass's guess at each later position ([START] + 1 = 1)."""
    paths = RasterPaths(stand_in("raster", next_code), ["a photo of a circle"], seeds=0, cfg=3.0,
                        sample_temperature=1e-3)
    for _ in range(5):
        paths.advance()
    assert paths.tokens[0, :5].tolist() == [1, 2, 3, 4, 5] and (paths.tokens[0, 5:] == K).all()
    assert paths.sampled[0].tolist() == [1, 2, 3, 4, 5] + [1] * (N - 5)
    paths.finish()
    assert paths.tokens[0].tolist() == list(range(1, N + 1)) and paths.passes.tolist() == [2 * N]
    unguided = stand_in("raster", next_code).paths(["a photo of a circle"], 0, cfg=1.0, sample_temperature=1e-3)
    unguided.finish()
    assert unguided.tokens[0].tolist() == list(range(1, N + 1)) and unguided.passes.tolist() == [N]  # one pass a step
    with pytest.raises(ValueError, match=r"^raster decoding needs a model trained with order='raster'"):
        RasterPaths(stand_in("masked"), ["a photo of a circle"])
    with pytest.raises(ValueError, match=r"^MaskGIT decoding needs a model trained with order='masked'"):
        MaskGITPaths(stand_in("raster"), ["a photo of a circle"])
