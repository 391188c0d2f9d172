"""Profiles: one name picks every size.

``smoke`` is for CI (tiny models, a handful of steps), ``cpu`` the default (real results on a laptop
CPU), ``gpu`` one GPU with larger models and data. A model's config is a dataclass whose defaults are
the ``cpu`` sizes, with the other profiles given as overrides::

    @dataclass
    class CLIPConfig(ProfileConfig):
        width: int = 128
        max_steps: int = 2000
        PROFILES: ClassVar[dict[str, dict]] = {"smoke": {"width": 32, "max_steps": 5}, "gpu": {...}}

    CLIPConfig.for_profile("smoke").width  # 32
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"


def resolve_profile(name: str | None = None) -> str:
    """Return ``name``, or ``$COTLAB_PROFILE``, or ``"cpu"``; reject an unknown name."""
    name = name or os.environ.get("COTLAB_PROFILE") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile '{name}': choose one of {', '.join(PROFILES)}")
    return name


@dataclass
class ProfileConfig:
    """Base for configs whose field defaults are the ``cpu`` profile, overridden per profile."""

    PROFILES: ClassVar[dict[str, dict]] = {}

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides: Any) -> ProfileConfig:
        """The config of ``profile``, with ``overrides`` (e.g. from a notebook's parameters) on top."""
        profile = resolve_profile(profile)
        unknown_profiles = sorted(set(cls.PROFILES) - set(PROFILES))
        if unknown_profiles:
            raise ValueError(f"{cls.__name__}.PROFILES has unknown profile(s) {unknown_profiles}: "
                             f"use {', '.join(PROFILES)}")
        names = {f.name for f in fields(cls)}
        # every profile is checked, not only this one, so that a typo in the gpu sizes fails in CI too
        for where, values in [*cls.PROFILES.items(), ("overrides", overrides)]:
            unknown = sorted(set(values) - names)
            if unknown:
                raise ValueError(f"{cls.__name__} has no field(s) {unknown} (in {where}): "
                                 f"use {', '.join(sorted(names))}")
        return cls(**{**cls.PROFILES.get(profile, {}), **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready for plain values)."""
        return asdict(self)
