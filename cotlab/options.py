"""The numbers a user types on the command line, checked as argparse reads them: a bad one is refused
before any work starts, in one line that says what is expected (``type=count`` and so on)."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # NumPy's and torch's seeds are unsigned 32-bit


def _read(text: str, kind: type, within: Callable[[float], bool], what: str):
    """``text`` as a ``kind`` (int or float), refused unless it is finite and ``within`` holds."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or not within(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def count(text: str) -> int:
    """A whole number of things (steps, samples, prompts …): 1 or more."""
    return _read(text, int, lambda n: n >= 1, "a whole number of 1 or more")


def seed(text: str) -> int:
    """A random seed: 0 … 2³² − 1."""
    return _read(text, int, lambda n: 0 <= n <= SEED_MAX, f"a seed: use a whole number 0 … {SEED_MAX}")


def weight(text: str) -> float:
    """A guidance weight: a finite number, 0 or more (1: no guidance, 0: the unconditional model)."""
    return _read(text, float, lambda w: w >= 0, "a guidance weight: use a finite number of 0 or more, e.g. 3")
