"""Profiles: resolving the name, and per-profile configs."""

from dataclasses import dataclass
from typing import ClassVar

import pytest

from cotlab.profiles import DEFAULT_PROFILE, PROFILES, ProfileConfig, resolve_profile


@dataclass
class SizeConfig(ProfileConfig):
    width: int = 64
    max_steps: int = 100
    PROFILES: ClassVar[dict[str, dict]] = {"smoke": {"width": 8, "max_steps": 2}, "gpu": {"width": 256}}


def test_resolve_profile_reads_env_then_default(monkeypatch):
    monkeypatch.delenv("COTLAB_PROFILE", raising=False)
    assert resolve_profile() == DEFAULT_PROFILE == "cpu"
    monkeypatch.setenv("COTLAB_PROFILE", "smoke")
    assert resolve_profile() == "smoke"
    assert resolve_profile("gpu") == "gpu"  # an explicit name wins over the env


def test_unknown_profile_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"^unknown profile 'x': choose one of smoke, cpu, gpu$"):
        resolve_profile("x")
    monkeypatch.setenv("COTLAB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        resolve_profile()


def test_config_defaults_are_cpu_and_overrides_apply():
    assert SizeConfig.for_profile("cpu") == SizeConfig(width=64, max_steps=100)
    assert SizeConfig.for_profile("smoke") == SizeConfig(width=8, max_steps=2)
    assert SizeConfig.for_profile("gpu") == SizeConfig(width=256, max_steps=100)
    assert SizeConfig.for_profile("smoke", max_steps=7).to_dict() == {"width": 8, "max_steps": 7}
    assert set(PROFILES) == {"smoke", "cpu", "gpu"}


def test_unknown_override_field_is_an_error():
    @dataclass
    class Typo(ProfileConfig):
        width: int = 64
        PROFILES: ClassVar[dict[str, dict]] = {"smoke": {"widht": 8}}

    with pytest.raises(ValueError, match=r"Typo has no field\(s\) \['widht'\] \(in smoke\)"):
        Typo.for_profile("smoke")
    with pytest.raises(ValueError, match="widht"):  # caught in every profile, so CI sees gpu typos
        Typo.for_profile("cpu")
    with pytest.raises(ValueError, match="no field"):
        SizeConfig.for_profile("cpu", depth=3)


def test_unknown_profile_in_overrides_is_an_error():
    @dataclass
    class BadProfile(ProfileConfig):
        width: int = 64
        PROFILES: ClassVar[dict[str, dict]] = {"smok": {"width": 8}}

    with pytest.raises(ValueError, match="unknown profile"):
        BadProfile.for_profile("cpu")
