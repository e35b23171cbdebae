"""A family of farms for the labelled scenarios: what differs between barns.

``FarmParams`` holds what one farm is like: herd size, parlour or robot
milking, a tank with or without a level sensor or agitator state, sampling
periods, message loss and radio gaps, climate, the noise of the sensor brands
it uses, how strong heats and illnesses are, and how often the whole herd is
disturbed (feed delays, hot days). ``sample(split, seed)`` draws one farm from
the ``TRAIN`` ranges (rules may be developed and tuned on these) or from the
``HELDOUT`` ranges (never used while tuning; only for reporting). The two
differ on purpose: bigger herds, robots, coarser or finer sampling, more loss,
noisier brands, weaker heats, heats in a cow's first week, hotter climates.

``FarmParams()`` with no arguments is the project's original single barn.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

SPLITS = ("train", "heldout")


@dataclass(frozen=True, slots=True)
class FarmParams:
    cows: int = 30
    milking: str = "parlour"  # "parlour" (fixed sessions) or "robot" (visits all day)
    milkings_per_day: int = 2  # parlour sessions; robot: mean visits per cow
    tank_level: bool = True  # the tank reports level_l
    tank_agitator: bool = True  # the tank reports its agitator state
    tank_period_s: float = 60.0
    tank_resolution: float = 0.1  # °C the tank probe reports in
    tank_noise: float = 0.05
    collection_every_days: int = 1
    climate_nodes: int = 1
    climate_period_s: float = 300.0
    climate: str = "temperate"  # "temperate", "warm", "hot"
    climate_gaps: float = 0.0  # share of climate intervals that are a 16-25 min radio gap
    temp_noise: float = 0.3  # °C, climate node
    water_period_s: float = 300.0
    loss: float = 0.0  # share of messages lost at random (every sensor)
    ec_noise: float = 0.03  # relative, per quarter and milking
    activity_noise: float = 0.2  # log sd of a collar window
    estrus_level: tuple[float, float] = (2.2, 4.0)  # peak activity, x her normal
    estrus_hours: tuple[float, float] = (12.0, 18.0)
    first_event_day: float = 8.0  # no cow event before this day (her history)
    rumination_drop: tuple[float, float] = (0.3, 0.5)
    herd_dip_days: float = 0.0  # share of days with a herd-wide rumination dip (feed delay)
    herd_dip: tuple[float, float] = (0.2, 0.35)  # how deep that dip is
    hot_day_rumination: float = 0.05  # the herd ruminates this much less on a hot day

    def describe(self) -> dict[str, Any]:
        return asdict(self)


# Ranges per split: (low, high) draws uniformly, a list picks one.
TRAIN: dict[str, Any] = {
    "cows": (30, 60),
    "milking": ["parlour"],
    "milkings_per_day": [2],
    "tank_level": [True, False],
    "tank_agitator": [True],
    "tank_period_s": [30.0, 60.0],
    "tank_resolution": [0.1],
    "tank_noise": (0.03, 0.06),
    "collection_every_days": [1, 2],
    "climate_nodes": [1, 2],
    "climate_period_s": [60.0, 300.0],
    "climate": ["temperate", "warm"],
    "climate_gaps": (0.0, 0.01),
    "temp_noise": (0.2, 0.35),
    "water_period_s": [60.0, 300.0],
    "loss": (0.0, 0.01),
    "ec_noise": (0.02, 0.035),
    "activity_noise": (0.15, 0.25),
    "estrus_level": [(2.2, 4.0)],
    "estrus_hours": [(12.0, 18.0)],
    "first_event_day": [8.0],
    "rumination_drop": [(0.3, 0.5)],
    "herd_dip_days": (0.0, 0.1),
    "herd_dip": [(0.2, 0.35)],
    "hot_day_rumination": (0.03, 0.08),
}
HELDOUT: dict[str, Any] = {
    "cows": (60, 120),
    "milking": ["parlour", "robot"],
    "milkings_per_day": [2, 3],
    "tank_level": [True, False],
    "tank_agitator": [True, False],
    "tank_period_s": [20.0, 120.0],
    "tank_resolution": [0.1, 0.25],
    "tank_noise": (0.05, 0.12),
    "collection_every_days": [1, 2, 3],
    "climate_nodes": [1, 3],
    "climate_period_s": [120.0, 600.0],
    "climate": ["warm", "hot"],
    "climate_gaps": (0.01, 0.04),
    "temp_noise": (0.3, 0.6),
    "water_period_s": [120.0],
    "loss": (0.01, 0.04),
    "ec_noise": (0.03, 0.05),
    "activity_noise": (0.2, 0.35),
    "estrus_level": [(1.9, 3.0)],
    "estrus_hours": [(10.0, 20.0)],
    "first_event_day": [2.0],
    "rumination_drop": [(0.25, 0.45)],
    "herd_dip_days": (0.1, 0.25),
    "herd_dip": [(0.2, 0.4)],
    "hot_day_rumination": (0.08, 0.15),
}


def sample(split: str, seed: int) -> FarmParams:
    """One farm from a split's ranges; the same (split, seed) gives the same farm."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    ranges = TRAIN if split == "train" else HELDOUT
    r = random.Random(f"farm:{split}:{seed}")
    kw: dict[str, Any] = {}
    for name, spec in ranges.items():
        if isinstance(spec, list):
            kw[name] = r.choice(spec)
        elif name in ("cows",):
            kw[name] = r.randint(*spec)
        else:
            kw[name] = r.uniform(*spec)
    if kw["milking"] == "robot":
        kw["milkings_per_day"] = 3  # mean visits; a robot farm has no sessions
    return FarmParams(**kw)
