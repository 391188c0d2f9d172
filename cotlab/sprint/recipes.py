"""How ``cotlab train`` trains and judges the models of notebook 05.

- ``sprint_teacher``: the shipped ``sana`` fine-tuned (flow matching, as before) to SANA-Sprint's two
  changes of the teacher — a dense time embedding (σ itself, not 1000·σ, as the timestep's input: the
  JVP's dF/dθ through 1000·σ's fast sinusoids is huge) and QK-norm — as the paper fine-tunes its own.
- ``sprint``: the hybrid student, sCM + ½·LADD; ``sprint_scm`` sCM alone; ``sprint_ladd`` LADD alone —
  the ablation: the same 800 steps from the same teacher (a hybrid step costs the most: 23-27 minutes
  on two cores, against 11 for sCM alone).

Teacher and students are judged like every generator (GenEval on the benchmark prompts × 4,
``benchmark_metrics``): the teacher with 20 flow-Euler steps and CFG 4.5, a student in one step.
"""
from __future__ import annotations

from cotlab.dit.model import SanaConfig, SanaDiT
from cotlab.harness import Recipe, checkpoint_config, load_checkpoint
from cotlab.profiles import resolve_profile
from cotlab.sampling import benchmark_metrics
from cotlab.sprint.model import SIZES, SprintConfig, SprintStudent, start_from_teacher


TEACHER_TRAINING = {  # the fine-tune's own schedule per profile (SANA-Sprint fine-tunes its teacher for 5k steps)
    "smoke": dict(max_steps=8),
    "cpu": dict(lr=2e-4, warmup_steps=50, max_steps=600, max_minutes=10.0),
    "gpu": dict(lr=2e-4, warmup_steps=100, max_steps=5000, max_minutes=60.0),
}


def teacher_config(profile: str) -> SanaConfig:
    """``sana``'s sizes with dense time and QK-norm, and the fine-tune's schedule for ``profile``."""
    sizes = {k: v for k, v in checkpoint_config("sana").items() if k in SIZES}
    return SanaConfig.for_profile(profile, **{**sizes, "qk_norm": True, "time_scale": 1.0},
                                  **TEACHER_TRAINING[resolve_profile(profile)])


def _start_from_sana(model: SanaDiT) -> SanaDiT:
    """Copy the shipped ``sana``'s weights in; only QK-norm's scales (ones) are new."""
    missing, unexpected = model.load_state_dict(load_checkpoint("sana").state_dict(), strict=False)
    if unexpected or any(".norm_q." not in key and ".norm_k." not in key for key in missing):
        raise RuntimeError(f"sana does not fit the teacher: missing {missing}, unexpected {unexpected}")
    return model


def _teacher() -> Recipe:
    return Recipe("sprint_teacher", lambda profile: _start_from_sana(SanaDiT(teacher_config(profile))),
                  lambda profile, seed: _shapes(teacher_config(profile).batch_size, seed), benchmark_metrics,
                  "sana fine-tuned to a dense time embedding and QK-norm: SANA-Sprint's teacher")


def _shapes(batch_size: int, seed: int):
    from cotlab.shapes import ShapesDataModule, captioned

    return ShapesDataModule(batch_size=batch_size, seed=seed, view=captioned)


def _student(name: str, description: str, **overrides) -> Recipe:
    def config(profile: str) -> SprintConfig:
        return SprintConfig.for_teacher(profile, **overrides)

    return Recipe(name, lambda profile: start_from_teacher(SprintStudent(config(profile))),
                  lambda profile, seed: _shapes(config(profile).batch_size, seed), benchmark_metrics, description)


SPRINT_TEACHER = _teacher()
SPRINT = _student("sprint", "SANA-Sprint's student: sCM + 0.5·LADD from sprint_teacher, one model for 1-4 steps")
SPRINT_SCM = _student("sprint_scm", "the sCM-only student (the ablation)", adv_weight=0.0)
SPRINT_LADD = _student("sprint_ladd", "the LADD-only student (the ablation)", scm_weight=0.0)
