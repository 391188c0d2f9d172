"""SANA-Sprint (notebook 05): the TrigFlow transform, the consistency tangent and its JVP, the explicit
cross-attention, the discriminator and the consistency sampler — each on a case with a known answer.

The point-mass 'teacher' (one data point x_0) has exact answers: its TrigFlow trajectories are
x_θ = cos θ·x_0 + sin θ·ε, so dx_θ/dθ = (cos θ·x_θ − x_0)/sin θ, and its exact consistency function
f(x_θ, θ) = x_0, i.e. σ_d·F*(x_θ/σ_d, θ) = (cos θ·x_θ − x_0)/sin θ."""
import math
from types import SimpleNamespace

import pytest
import torch
from diffusers.models.transformers.sana_transformer import SanaAttnProcessor2_0

from cotlab.dit.model import SanaConfig, SanaDiT
from cotlab.flow import euler_sample, timestep_embedding, trigflow, trigflow_euler_sample, trigflow_thetas
from cotlab.harness import save_checkpoint
from cotlab.sampling import sample
from cotlab.sprint.decoding import SprintPaths, sampling_times
from cotlab.sprint.discriminator import Discriminator, LocalBatchNorm
from cotlab.sprint.model import (ExplicitCrossAttention, SprintConfig, SprintStudent, consistency_tangent, hinge_loss,
                                 start_from_teacher)

SD = 0.5


def teacher(**overrides) -> SanaDiT:
    torch.manual_seed(0)
    return SanaDiT(SanaConfig.for_profile("smoke", **{"qk_norm": True, "time_scale": 1.0, "layers": 2, **overrides})).eval()


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    save_checkpoint(teacher(), folder, name="sprint_teacher", profile="smoke", command="test", train_seconds=0,
                    steps=0, metrics={})
    return folder


@pytest.fixture(scope="module")
def student(teacher_folder):
    torch.manual_seed(1)
    config = SprintConfig.for_teacher("smoke", teacher=str(teacher_folder), disc_blocks=(0, 1))
    return start_from_teacher(SprintStudent(config)).eval()


def text_for(model, n):
    return model.encode_text(["a red circle", "two blue squares", "a green triangle above a red circle", ""][:n])


# --- TrigFlow --------------------------------------------------------------------------------------
def test_trigflow_of_the_exact_flow_velocity_is_the_exact_trigflow_velocity():
    x_0, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    theta = torch.tensor([0.2, 0.8, 1.4])
    c, s = theta.cos()[:, None, None, None], theta.sin()[:, None, None, None]
    x_theta = c * x_0 + s * eps
    flow_velocity = lambda x, sigma: (x - x_0) / sigma[:, None, None, None]  # the flow path through x_0
    assert torch.allclose(trigflow(flow_velocity, x_theta, theta), -s * x_0 + c * eps, atol=1e-5)


def test_the_transformed_teacher_follows_the_same_ode():
    """Flow Euler from σ = 1 and TrigFlow Euler from θ = π/2, from the same noise: both converge to
    the one probability-flow ODE's solution, so with many steps they agree."""
    model = teacher(time_scale=1000.0)
    text, mask = text_for(model, 2)
    noise = torch.randn(2, 32, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = lambda x, sigma: model(x, sigma, text, mask)
        flow = euler_sample(v, noise, steps=400)
        trig = trigflow_euler_sample(lambda x, theta: trigflow(v, x, theta), noise, steps=400)
        coarse = trigflow_euler_sample(lambda x, theta: trigflow(v, x, theta), noise, steps=4)
    gap = (flow - trig).abs().max().item()
    assert gap < 0.02 * flow.abs().max().item()
    assert gap < 0.2 * (coarse - flow).abs().max().item()  # the agreement is the ODE's, not a loose tolerance


def test_trigflow_times_are_log_normal_noise_levels():
    theta = trigflow_thetas(20_000, 0.2, 1.6, SD, generator=torch.Generator().manual_seed(0))
    tau = torch.log(SD * theta.tan())
    assert abs(tau.mean().item() - 0.2) < 0.05 and abs(tau.std().item() - 1.6) < 0.05
    assert bool(((theta > 0) & (theta < math.pi / 2)).all())


# --- the consistency tangent --------------------------------------------------------------------
def point_mass(x_0):
    dxdt = lambda x, theta: (theta.cos()[:, None, None, None] * x - x_0) / theta.sin()[:, None, None, None]
    exact_F = lambda x_scaled, theta: dxdt(SD * x_scaled, theta) / SD  # f(x_θ, θ) = x_0 for every θ
    return dxdt, exact_F


def test_the_tangent_vanishes_for_the_exact_consistency_function():
    x_0 = torch.randn(3, 2, 4, 4)
    theta = torch.tensor([0.3, 0.9, 1.5])
    x_t = theta.cos()[:, None, None, None] * x_0 + theta.sin()[:, None, None, None] * SD * torch.randn(3, 2, 4, 4)
    dxdt, exact_F = point_mass(x_0)
    F_minus, g = consistency_tangent(exact_F, x_t, theta, dxdt(x_t, theta), SD)
    assert torch.allclose(F_minus, exact_F(x_t / SD, theta))
    assert g.abs().max() < 1e-4
    wrong_F = lambda x_scaled, t: exact_F(x_scaled, t) + 0.1 * x_scaled  # not constant along trajectories
    assert consistency_tangent(wrong_F, x_t, theta, dxdt(x_t, theta), SD)[1].abs().max() > 1e-2


def test_the_tangent_is_cos_theta_times_df_dtheta_along_the_ode():
    """g = cos θ·df/dθ at r = 1, with df/dθ by central differences along the teacher's ODE."""
    torch.manual_seed(0)
    x_0 = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    W = torch.randn(2, 2, dtype=torch.float64)
    F = lambda x, t: torch.einsum("oc,bchw->bohw", W, x).tanh() * t.cos()[:, None, None, None] + x  # any smooth F
    dxdt, _ = point_mass(x_0)
    theta = torch.tensor([0.4, 1.1], dtype=torch.float64)
    x_t = theta.cos()[:, None, None, None] * x_0 + theta.sin()[:, None, None, None] * SD * torch.randn_like(x_0)
    f = lambda x, t: t.cos()[:, None, None, None] * x - t.sin()[:, None, None, None] * SD * F(x / SD, t)
    h = 1e-5
    forward, backward = x_t + h * dxdt(x_t, theta), x_t - h * dxdt(x_t, theta)
    df = (f(forward, theta + h) - f(backward, theta - h)) / (2 * h)
    g = consistency_tangent(F, x_t, theta, dxdt(x_t, theta), SD)[1]
    assert torch.allclose(g, theta.cos()[:, None, None, None] * df, atol=1e-6)


# θ_1 = arctan(3/4) (sin 0.6, cos 0.8) and θ_2 = arctan(4/3) (sin 0.8, cos 0.6): hand-computable angles
THETAS = torch.tensor([math.atan(3 / 4), math.atan(4 / 3)])


def linear_F(p=0.0):
    """F(x, θ) = 3x + 2 sin θ + p, so F⁻ = 3x + 2 sin θ and dF/dθ along dx/dθ = 3·(dx/dθ)/σ_d + 2 cos θ."""
    return lambda x, theta: 3 * x + 2 * theta.sin()[:, None, None, None] + p


def tangent_by_hand(r):
    """σ_d = 0.5. Sample 1: x_θ = 1, dx/dθ = 2: F⁻ = 3·2 + 1.2 = 7.2, dF/dθ = 3·4 + 1.6 = 13.6,
    g = −0.64·(0.5·7.2 − 2) − r·0.48·(1 + 0.5·13.6) = −1.024 − 3.744r. Sample 2: x_θ = −1, dx/dθ = 1:
    F⁻ = −6 + 1.6 = −4.4, dF/dθ = 6 + 1.2 = 7.2, g = −0.36·(−2.2 − 1) − r·0.48·(−1 + 3.6) = 1.152 − 1.248r."""
    return [-1.024 - 3.744 * r, 1.152 - 1.248 * r]


X_T, DXDT = torch.tensor([1.0, -1.0]), torch.tensor([2.0, 1.0])


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0])
def test_the_tangent_with_its_warm_up_by_hand(r):
    F_minus, g = consistency_tangent(linear_F(), X_T[:, None, None, None], THETAS, DXDT[:, None, None, None], SD, r)
    assert F_minus.flatten().tolist() == pytest.approx([7.2, -4.4], abs=1e-5)
    assert g.flatten().tolist() == pytest.approx(tangent_by_hand(r), abs=1e-5)


class ScalarStudent:
    """``consistency_loss``'s collaborators with known values: the student's F = ``linear_F(p)`` with a
    parameter p = 0, a guided teacher whose dx/dθ is (2, 1), the log-variance u given per sample."""

    def __init__(self, u, step, warmup, D):
        self.config, self.global_step = SimpleNamespace(sigma_data=SD, tangent_warmup=warmup), step
        self.p, self.u, self.D = torch.zeros((), requires_grad=True), torch.tensor(u, requires_grad=True), D
        self.asked = {}

    def teacher_velocity(self, x, theta, text, text_mask, cfg):
        assert len(text) == len(text_mask) == 2 * len(x)  # captions, then the empty ones
        self.asked["teacher"] = x
        return (DXDT / SD)[:, None, None, None].expand_as(x)

    def trigflow(self, x, theta, text, text_mask, cfg):
        assert len(text) == len(text_mask) == len(x)  # the captions only
        return linear_F(self.p)(x, theta)

    def log_variance(self, features):
        self.asked["features"] = features
        return self.u[:, None]


@pytest.mark.parametrize("step, warmup, r", [(2, 4, 0.5), (10, 4, 1.0), (1, 0, 1.0)])
@pytest.mark.parametrize("D", [1, 2])
def test_the_consistency_loss_with_its_adaptive_weighting_by_hand(step, warmup, r, D):
    """L = mean_b [w_b e^{−u_b}·‖F − F⁻ − ĝ‖²/D + u_b], w = 1/(σ_d tan θ) = (8/3, 3/2), u = (0.3, −0.2),
    ĝ = g/(‖g‖ + 0.1) with ‖g‖ = √D·|g| for D equal entries. F = F⁻ in value, so the loss is
    mean(w e^{−u} ĝ² + u); its gradient reaches F alone (F⁻ and g are constants): ∂L/∂p = −mean(2 w e^{−u} ĝ),
    ∂L/∂u_b = (1 − w_b e^{−u_b} ĝ_b²)/2. u reads θ's flow time σ = sin θ/(sin θ + cos θ) = (3/7, 4/7)."""
    model = ScalarStudent([0.3, -0.2], step, warmup, D)
    x_t = X_T[:, None, None, None].expand(2, 1, 1, D)
    text, mask = torch.zeros(4, 1, 1), torch.ones(4, 1, dtype=torch.bool)
    loss = SprintStudent.consistency_loss(model, x_t, THETAS, text, mask, torch.tensor([4.5, 4.5]))
    g_hat = [g / (math.sqrt(D) * abs(g) + 0.1) for g in tangent_by_hand(r)]
    w, u = [8 / 3, 3 / 2], [0.3, -0.2]
    terms = [w[b] * math.exp(-u[b]) * g_hat[b] ** 2 + u[b] for b in range(2)]
    assert loss.item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    loss.backward()
    assert model.p.grad.item() == pytest.approx(-sum(2 * w[b] * math.exp(-u[b]) * g_hat[b] for b in range(2)) / 2, rel=1e-5)
    assert model.u.grad.tolist() == pytest.approx([(1 - w[b] * math.exp(-u[b]) * g_hat[b] ** 2) / 2 for b in range(2)], rel=1e-5)
    assert torch.allclose(model.asked["teacher"], x_t / SD)
    assert torch.allclose(model.asked["features"], timestep_embedding(torch.tensor([3 / 7, 4 / 7]), 256), atol=1e-4)


class GuidedTeacher:
    """A stand-in for the frozen teacher: velocity 3·x_σ with a caption (text 1), x_σ without (text 0),
    so guidance w gives x_σ + w·2x_σ = (1 + 2w)·x_σ."""

    def __init__(self):
        self.asked = []

    def frozen(self, name):
        assert name == "teacher"
        return self

    def __call__(self, x_sigma, sigma, text, text_mask):
        self.asked.append((x_sigma.flatten(), sigma))
        return (1 + 2 * text[:, 0, 0])[:, None, None, None] * x_sigma


def test_the_guided_teacher_velocity_by_hand():
    """θ_1 = arctan(3/4), x_θ = 1.4: x_σ = 1.4/1.4 = 1 at σ = 3/7; w = 4: v = 9, F = 0.2·1 + 9/1.4.
    θ_2 = arctan(4/3), x_θ = 2.8: x_σ = 2 at σ = 4/7; w = 5: v = 22, F = −0.2·2 + 22/1.4."""
    teacher = GuidedTeacher()
    text = torch.tensor([1.0, 1.0, 0.0, 0.0])[:, None, None]  # (2B, T, D_text): the captions, then the empty ones
    F = SprintStudent.teacher_velocity(teacher, torch.tensor([1.4, 2.8])[:, None, None, None], THETAS, text,
                                       torch.ones(4, 1, dtype=torch.bool), torch.tensor([4.0, 5.0]))
    assert F.flatten().tolist() == pytest.approx([0.2 + 9 / 1.4, -0.4 + 22 / 1.4], rel=1e-5)
    (x_sigma, sigma), = teacher.asked  # one batched call: conditional and unconditional rows
    assert x_sigma.tolist() == pytest.approx([1.0, 2.0, 1.0, 2.0]) and sigma.tolist() == pytest.approx([3 / 7, 4 / 7] * 2)


def test_the_jvp_through_the_student_matches_finite_differences(student):
    """torch.func.jvp through diffusers' transformer (linear attention, the explicit cross-attention,
    QK-norm, the time and guidance embeddings) against a central difference. The attention runs in
    float32 whatever the input, so the difference step is 1e-3 and the agreement about 1e-3 relative —
    far closer than a JVP that misses the θ part of the tangent."""
    text, mask = text_for(student, 3)
    g = torch.Generator().manual_seed(0)
    x, tx = torch.randn(3, 32, 4, 4, generator=g), torch.randn(3, 32, 4, 4, generator=g)
    theta, t_theta = torch.tensor([0.3, 0.9, 1.4]), torch.tensor([1.0, -0.5, 0.7])
    F = lambda x, t: student.trigflow(x, t, text, mask, torch.full((3,), 4.5))
    with torch.no_grad():
        _, jvp = torch.func.jvp(F, (x, theta), (tx, t_theta))
        _, jvp_x_only = torch.func.jvp(F, (x, theta), (tx, torch.zeros(3)))
        h = 1e-3
        fd = (F(x + h * tx, theta + h * t_theta) - F(x - h * tx, theta - h * t_theta)) / (2 * h)
    error = ((jvp - fd).norm() / fd.norm()).item()
    assert error < 3e-3
    assert ((jvp_x_only - fd).norm() / fd.norm()).item() > 10 * error

# --- the student -------------------------------------------------------------------------------
def test_explicit_cross_attention_equals_diffusers_fused_one(student):
    attn = student.transformer.transformer_blocks[0].attn2
    x = torch.randn(2, 16, attn.to_q.in_features)
    context = torch.randn(2, 7, attn.to_k.in_features)
    bias = torch.zeros(2, 1, 7)
    bias[1, :, 4:] = -10000.0  # the transformer's padding bias
    with torch.no_grad():
        assert torch.allclose(ExplicitCrossAttention()(attn, x, context, bias),
                              SanaAttnProcessor2_0()(attn, x, context, bias), atol=1e-5)


def test_the_student_starts_as_the_teacher(student, teacher_folder):
    from cotlab.harness import load_checkpoint

    model = load_checkpoint(teacher_folder)
    text, mask = text_for(model, 2)
    x, theta = torch.randn(2, 32, 4, 4), torch.tensor([0.5, 1.2])
    with torch.no_grad():
        expected = trigflow(lambda xs, s: model(xs, s, text, mask), x, theta)
        got = student.trigflow(x, theta, text, mask, torch.full((2,), 4.5))
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_training_step_updates_the_student_and_the_discriminator(teacher_folder):
    from cotlab.harness import fit
    from cotlab.shapes import ShapesDataModule, captioned

    torch.manual_seed(0)
    config = SprintConfig.for_teacher("smoke", teacher=str(teacher_folder), disc_blocks=(0, 1), max_steps=2)
    model = start_from_teacher(SprintStudent(config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = fit(model, ShapesDataModule(batch_size=8, seed=0, view=captioned), profile="smoke", run_dir="/tmp/sprint-test",
                  name="sprint", enable_progress_bar=False, logger=False)
    assert trainer.global_step == 2  # the student's steps (the discriminator's are not counted)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("transformer.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)
    assert any(k.startswith("transformer.time_embed.guidance_embedder") for k in changed)


def test_disc_blocks_must_exist(teacher_folder):
    with pytest.raises(ValueError, match="disc_blocks"):
        SprintConfig.for_teacher("smoke", teacher=str(teacher_folder), disc_blocks=(5,))


# --- the discriminator ------------------------------------------------------------------------
def test_local_batch_norm_normalises_each_group_of_samples():
    norm = LocalBatchNorm(3, group=4)
    x = torch.randn(8, 3, 5) * torch.tensor([1.0, 5.0, 0.5])[:, None] + 7
    y = norm(x).reshape(2, 4, 3, 5)
    assert torch.allclose(y.mean(dim=(1, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 3), unbiased=False), torch.ones(2, 3), atol=1e-3)


def test_the_discriminator_reads_the_teacher_and_passes_gradients_to_its_input():
    model = teacher().requires_grad_(False)
    disc = Discriminator(model.config.width, (0, 1))
    text, mask = text_for(model, 2)
    x = torch.randn(2, 32, 4, 4, requires_grad=True)
    logits = disc(model, x, torch.tensor([0.4, 1.0]), text, mask)
    assert logits.shape == (2, 2 * 16)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0
    assert not model.transformer.transformer_blocks[0]._forward_hooks  # the hooks are gone


# --- sampling ----------------------------------------------------------------------------------
class ExactStudent:
    """A stand-in student whose F is the point mass's exact consistency function."""

    def __init__(self, x_0):
        self.x_0, self.device, self.latent_shape = x_0, torch.device("cpu"), tuple(x_0.shape)
        self.config = SimpleNamespace(sigma_data=SD)

    def encode_text(self, captions):
        return torch.zeros(len(captions), 1, 1), torch.ones(len(captions), 1)

    def trigflow(self, x, theta, text, mask, cfg):
        return point_mass(SD * self.x_0)[1](x, theta)

    def decode_latents(self, z):
        return z


@pytest.mark.parametrize("steps", [1, 2, 4, 3])
def test_every_step_count_lands_on_the_exact_image(steps):
    x_0 = torch.randn(2, 3, 3)
    paths = SprintPaths(ExactStudent(x_0), ["a", "b"], [1, 2], steps=steps)
    paths.finish()
    assert torch.allclose(paths.tokens, x_0.expand(2, -1, -1, -1), atol=1e-5)
    assert paths.passes.tolist() == [steps, steps]


def test_sampling_times_are_sana_sprints():
    assert sampling_times(1) == pytest.approx([math.pi / 2, 0.0])
    assert sampling_times(2) == pytest.approx([1.5683, 1.3, 0.0])
    assert sampling_times(4) == pytest.approx([1.5683, 1.3, 1.1, 0.6, 0.0])
    with pytest.raises(ValueError, match="at least 1"):
        sampling_times(0)


def test_the_student_samples_and_a_restored_path_resumes_identically(student):
    captions = ["a red circle", "two blue squares"]
    result = sample(student, captions, seed=[3, 4], steps=4, keep_steps=True)
    assert result.images.shape == (2, 3, 32, 32) and result.forward_passes == 4 and len(result.steps) == 4
    paths = student.paths(captions, [3, 4], steps=4)
    paths.advance()
    paths.advance()
    saved, stream = paths.state(0), paths.generators[0].get_state()
    paths.finish()
    assert torch.allclose(paths.tokens, result.tokens, atol=1e-5)  # stepping by hand is sampling
    paths.restore(0, saved)
    paths.generators[0].set_state(stream)
    assert paths.position[0] == 2 and not paths.done(0)
    paths.finish()
    assert torch.allclose(paths.tokens, result.tokens, atol=1e-5)


# --- cotlab bench sampling ------------------------------------------------------------------------
def test_the_sampling_bench_compares_teacher_and_student(teacher_folder, student, tmp_path):
    from cotlab.geneval import paired_difference
    from cotlab.sprint.bench import bench_sampling, format_sampling

    student_folder = save_checkpoint(student, tmp_path / "student", name="sprint", profile="smoke", command="test",
                                     train_seconds=0, steps=0, metrics={})
    result = bench_sampling([str(teacher_folder), str(student_folder)], every=100, n_samples=1, batches=(1, 2),
                            timing_seconds=0.0)
    by = {(r["generator"], r["steps"]): r for r in result["rows"]}
    assert {s for g, s in by if g == str(teacher_folder)} == {2, 4, 8, 16, 20, 32}
    assert {s for g, s in by if g == str(student_folder)} == {1, 2, 4}
    assert by[str(teacher_folder), 20]["forward_passes"] == 40  # CFG: two passes a step
    assert by[str(student_folder), 4]["forward_passes"] == 4  # distilled guidance: one
    assert by[str(teacher_folder), 20]["speedup"] == {"1": 1.0, "2": 1.0}
    one_step = by[str(student_folder), 1]
    assert one_step["speedup"]["1"] == pytest.approx(by[str(teacher_folder), 20]["latency_s"]["1"] / one_step["latency_s"]["1"])
    first = result["differences"][0]
    assert first["difference"] == pytest.approx(one_step["overall"] - by[str(teacher_folder), 20]["overall"])
    assert "| 1 |" in format_sampling(result)


@pytest.mark.parametrize("extra", [["--save-process"], ["--verifier", "clip", "--candidates", "3"],
                                   ["--verifier", "clip-prm", "--candidates", "3"]])
def test_cotlab_generate_draws_with_the_student_in_few_steps(student, tmp_path, extra):
    import json

    from cotlab.cli import main
    from cotlab.geneval import benchmark_prompts

    folder = save_checkpoint(student, tmp_path / "student", name="sprint", profile="smoke", command="test",
                             train_seconds=0, steps=0, metrics={})
    prompts = tmp_path / "one.jsonl"
    prompts.write_text(json.dumps(benchmark_prompts()[0]) + "\n")
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--metadata", str(prompts), "--outdir", str(out), "--n-samples", "1",
                 "--steps", "2", *extra]) == 0
    assert (out / "00000" / "samples" / "0000.png").is_file()
    if extra == ["--save-process"]:
        assert sorted(p.name for p in (out / "00000" / "process" / "0000").iterdir()) == ["step_00.png", "step_01.png"]


def test_the_frontier_figure_draws_a_line_per_generator(tmp_path):
    import matplotlib.pyplot as plt

    from cotlab.sprint.figures import frontier

    row = lambda g, steps, s, score: {"generator": g, "steps": steps, "overall": score, "interval": [score - 0.02, score + 0.02],
                                      "latency_s": {"1": s, "64": 10 * s}}
    result = {"rows": [row("sprint_teacher", 4, 0.2, 0.5), row("sprint_teacher", 20, 1.0, 0.68),
                       row("sprint", 1, 0.02, 0.6), row("sprint", 2, 0.04, 0.65)]}
    fig = frontier(result, "64", save=tmp_path, name="f")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and (tmp_path / "f.png").is_file()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sprint_teacher", "sprint"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "20", "4"]
    plt.close(fig)


def test_the_student_saves_and_loads_as_a_diffusers_pipeline_that_draws_the_same_images(student, tmp_path):
    from cotlab.sprint.pipeline import ShapesSanaSprintPipeline, to_pipeline

    to_pipeline(student).save_pretrained(tmp_path / "pipe")
    pipe = ShapesSanaSprintPipeline.from_pretrained(tmp_path / "pipe")
    for steps in (1, 2, 4):
        expected = sample(student, ["a photo of a red circle"], [7], steps=steps, cfg=4.5).images
        images = pipe("a photo of a red circle", num_inference_steps=steps, generator=torch.Generator().manual_seed(7)).images
        assert torch.allclose(images, expected, atol=2e-3), steps


def test_the_student_viewer_shows_a_jump_and_answers_its_controls(student):
    from cotlab.errors import CotlabError
    from cotlab.geneval import benchmark_prompts
    from cotlab.sprint.viewer import SprintViewer

    viewer = SprintViewer(student, benchmark_prompts()[:3], steps=4)
    figure = viewer.render(prompt=1, seed=0, step=2)
    assert len(figure.axes) == 3 and "θ = 1.10" in figure.axes[0].get_title()  # after 2 of 4 steps: Table 7's third time
    assert "4 consistency steps" in figure._suptitle.get_text()
    last = viewer.render(prompt=1, seed=0, step=4)
    assert "θ = 0.00" in last.axes[0].get_title() and len(viewer._sampled) == 1  # one sampling, cached
    viewer.widget()
    viewer.slider.value = 1
    viewer.picker.value = 2
    assert (viewer.prompt, viewer.step) == (2, 1)
    with pytest.raises(CotlabError, match="step 5 is out of range"):
        viewer.render(step=5)


def test_the_discriminator_hinge_loss_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])  # max(0, 1 − D): 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-3.0, 0.0])  # max(0, 1 + D): 0, 1 -> mean 1/2
    assert hinge_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1 / 2))
    # confident and right on both sides: no loss at all
    assert hinge_loss(torch.tensor([1.5]), torch.tensor([-1.0])).item() == 0.0
    # it trains the discriminator: d/dD(real) = −½·(1/3) where 1 − D > 0, d/dD(fake) = ½·(1/2) where 1 + D > 0
    real, fake = real.requires_grad_(), fake.requires_grad_()
    hinge_loss(real, fake).backward()
    assert real.grad.tolist() == pytest.approx([0, -1 / 6, -1 / 6]) and fake.grad.tolist() == pytest.approx([0, 1 / 4])
