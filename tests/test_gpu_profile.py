"""The gpu profile, which nobody can run here, still builds, and is larger than the cpu one.

Models are built on the meta device: shapes without memory, so even the largest costs nothing.
"""

import pytest
import torch

from cotlab.harness import checkpoint_config
from cotlab.preference.dpo import DPOConfig
from cotlab.preference.grpo import GRPOConfig
from cotlab.registry import RECIPES, get_recipe, recipes_in
from cotlab.sprint.model import SprintConfig
from cotlab.sprint.recipes import teacher_config

ALIGNED = recipes_in("cotlab.preference") + recipes_in("cotlab.sprint")  # copies of a shipped model: built from its weights, its size


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(ALIGNED)))
def test_gpu_profile_builds_and_is_larger_than_cpu(name):
    recipe = get_recipe(name)
    with torch.device("meta"):
        gpu, cpu = recipe.build("gpu"), recipe.build("cpu")
    assert all(p.is_meta for p in gpu.parameters())
    assert parameter_count(gpu) > parameter_count(cpu)


@pytest.mark.parametrize("config_class", [DPOConfig, GRPOConfig])
def test_aligned_models_keep_their_base_size_and_train_more_on_gpu(config_class):
    gpu, cpu = config_class.for_base("gpu"), config_class.for_base("cpu")
    assert gpu.width == cpu.width == checkpoint_config(cpu.base)["width"]
    assert gpu.max_steps > cpu.max_steps and gpu.batch_size >= cpu.batch_size


def test_sprints_teacher_and_students_keep_their_size_and_train_more_on_gpu():
    for gpu, cpu in ((teacher_config("gpu"), teacher_config("cpu")),
                     (SprintConfig.for_teacher("gpu"), SprintConfig.for_teacher("cpu"))):
        assert gpu.width == cpu.width == checkpoint_config("sana")["width"] and gpu.layers == cpu.layers
        assert gpu.max_steps > cpu.max_steps and gpu.batch_size >= cpu.batch_size
