"""Train-blur values: a plain level (a number) or a blur mixture, one model trained on several levels at once.

A mixture is a value of the train-blur axis like any kernel. Its canonical form is the string
``"mix:0/5/10"`` (levels sorted, duplicates dropped): JSON- and YAML-safe, readable in a trial's config, and
usable as a Ray grid value. Accepted spellings, in YAML or on the command line::

    train_blur: [0, 5, 10, {mix: [0, 5, 10]}]       # YAML
    --blur 0,5,10,mix:0/5/10                         # command line ("mix 0/5/10" also works)

Every training image gets a level drawn uniformly from the set, afresh every epoch, from the trial's seed
(`draw_levels`), so a resumed trial draws what an uninterrupted one would have drawn.

Names: `label` for people (``"mix 0/5/10"``), `slug` for directory names (``"mix0_5_10"``), `sort_key`
puts mixtures after the plain levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwclf.errors import UserError

MIX_PREFIX = "mix:"
MIX_KEY = "mix"


def _fmt(level: float) -> str:
    return f"{level:g}"


def _level(item: Any, field: str, integer: bool) -> int | float:
    """One blur level: a number >= 0 (a whole number for box kernels)."""
    if isinstance(item, bool):
        value = None
    else:
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = None
    if value is None or value != value:  # NaN
        raise UserError(f"{field}: {item!r} is not a number; give blur levels such as 0,5,10 or mix:0/5/10")
    if integer and value != int(value):
        raise UserError(f"{field}: {item!r} is not a whole number; box kernels are integers such as 0,5,10")
    if value < 0:
        raise UserError(f"{field}: {item!r} is negative; blur levels are >= 0 (0 = no blur)")
    return int(value) if integer or value.is_integer() else value


def make_mix(levels, field: str = "train_blur", integer: bool = True) -> str:
    """The canonical mixture string of a list of levels: ``[10, 0, 5] -> "mix:0/5/10"``."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise UserError(f"{field}: a mixture takes a list of blur levels, such as {{mix: [0, 5, 10]}}, "
                        f"got {levels!r}")
    items = list(levels)
    for item in items:
        if isinstance(item, (dict, list, tuple)) or is_mix(item):
            raise UserError(f"{field}: a mixture holds plain blur levels, not {item!r} (no mixtures of mixtures)")
    values = sorted({_level(i, field, integer) for i in items})
    if len(values) < 2:
        raise UserError(f"{field}: a mixture needs at least two different blur levels, got {items!r}; "
                        f"for one level give the number itself")
    return MIX_PREFIX + "/".join(_fmt(v) for v in values)


def parse_train_blur(value: Any, field: str = "train_blur", integer: bool = True) -> int | float | str:
    """A number, ``{mix: [...]}``, ``"mix:0/5/10"`` or ``"mix 0/5/10"`` -> a level or a canonical mixture."""
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k != MIX_KEY)
        if unknown or MIX_KEY not in value:
            raise UserError(f"{field}: unknown key(s) {', '.join(unknown) or '(none)'} in {value!r}; "
                            f"a mixture is written {{mix: [0, 5, 10]}}")
        return make_mix(value[MIX_KEY], field, integer)
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low.startswith(MIX_KEY):
            rest = text[len(MIX_KEY):].lstrip(": ").strip()
            parts = [p.strip() for p in rest.replace("+", "/").split("/") if p.strip()]
            if not parts:
                raise UserError(f"{field}: empty mixture {value!r}; write mix:0/5/10")
            return make_mix(parts, field, integer)
    if isinstance(value, (list, tuple)):
        raise UserError(f"{field}: {value!r} is a list inside the list; a mixture is written "
                        f"{{mix: [0, 5, 10]}} (YAML) or mix:0/5/10")
    return _level(value, field, integer)


def parse_train_blurs(value: Any, field: str = "train_blur", integer: bool = True) -> tuple:
    """The whole train-blur axis: ``"0,5,mix:0/5/10"``, ``[0, 5, {mix: [0, 5]}]`` or one number."""
    if isinstance(value, str):
        items = [t.strip() for t in value.split(",") if t.strip()]
        if not items:
            raise UserError(f"{field}: empty list; give comma-separated levels such as 0,5,10 or mix:0/5/10")
    elif isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            raise UserError(f"{field}: empty list; give blur levels such as [0, 5, 10]")
    elif isinstance(value, dict):
        items = [value]
    else:
        items = [value]
    return tuple(dict.fromkeys(parse_train_blur(i, field, integer) for i in items))


def is_mix(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MIX_PREFIX)


def mix_levels(value: Any) -> tuple:
    """The levels a train-blur value trains on: ``"mix:0/5"`` -> (0, 5); ``5`` -> (5,)."""
    if is_mix(value):
        return tuple(int(float(p)) if float(p).is_integer() else float(p) for p in value[len(MIX_PREFIX):].split("/"))
    return (value,)


def label(value: Any) -> str:
    """For people: ``5`` -> "5", ``"mix:0/5/10"`` -> "mix 0/5/10"."""
    if is_mix(value):
        return "mix " + value[len(MIX_PREFIX):]
    return _fmt(float(value))


def slug(value: Any) -> str:
    """For file and directory names: ``5`` -> "5", ``"mix:0/5/10"`` -> "mix0_5_10"."""
    if is_mix(value):
        return MIX_KEY + value[len(MIX_PREFIX):].replace("/", "_")
    return _fmt(float(value))


def from_slug(text: str) -> int | float | str:
    """Inverse of `slug`."""
    if text.startswith(MIX_KEY):
        return MIX_PREFIX + text[len(MIX_KEY):].replace("_", "/")
    f = float(text)
    return int(f) if f.is_integer() else f


def sort_key(value: Any) -> tuple:
    """Plain levels in numeric order, then mixtures (by their levels)."""
    if is_mix(value):
        return (1, tuple(float(v) for v in mix_levels(value)))
    return (0, (float(value),))


VALIDATION_DRAW = -1  # the `epoch` of the validation split's draw, made once per trial


def draw_levels(n: int, n_levels: int, seed: int, epoch: int) -> np.ndarray:
    """Index of the level each of `n` images gets in `epoch` (0-based; VALIDATION_DRAW for the validation
    split): uniform, and a pure function of (seed, epoch), so a resumed trial redraws the same."""
    rng = np.random.default_rng([int(seed), int(epoch) + 1, 0x6D6978])  # "mix": a stream of its own
    return rng.integers(0, n_levels, size=n)
