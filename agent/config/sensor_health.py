"""Sensor-health checks that learn each sensor's own behaviour (``detect.rules.plausibility.health``).

Every check judges time on the sensor's clock (its ``source_ts`` where it sends
one) and compares a sensor with its own history, or a climate node with its
neighbours; the fixed numbers here are floors, margins and learning times, not
the thresholds themselves. See docs/alerts.md, "Sensor health".
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config.base import Section


def _spike_min_step() -> dict[str, float]:
    return {"temperature_c": 3.0, "humidity_pct": 12.0, "milk_temp_c": 3.0}


def _spike_ratio() -> dict[str, float]:
    return {"activity": 8.0}


def _spike_ratio_min() -> dict[str, float]:
    return {"activity": 1000.0}


def _stuck_rest_ends() -> dict[str, Literal["lo", "hi"]]:
    return {"humidity_pct": "hi", "flow_lpm": "lo"}


def _stuck_keys() -> list[str]:
    return ["temperature_c", "humidity_pct", "milk_temp_c", "flow_lpm", "activity"]


def _drift_min_abs() -> dict[str, float]:
    return {"temperature_c": 1.0, "humidity_pct": 5.0}


class SensorHealthConfig(Section):
    # -- dropout: silence against the device's own reporting rhythm --------------
    dropout_floor_s: float = Field(
        1800.0, gt=0, description="Never call a silence shorter than this a dropout: a "
        "barn's radio drops fast-reporting nodes for 16 to 25 minutes at a time as a "
        "matter of course, and a silent sensor is still reported within the hour.",
    )
    dropout_median_factor: float = Field(
        3.5, gt=1, description="Silent for this many median reporting intervals: a dropout."
    )
    dropout_early_factor: float = Field(
        6.0, gt=1,
        description="...this many during the device's first dropout_learn_s (its rhythm is "
        "not known well yet).",
    )
    dropout_long_gap_factor: float = Field(
        1.75, gt=1,
        description="...and longer than this times the longest normal gap seen recently "
        "(devices with irregular rhythm, meters silent between milkings).",
    )
    dropout_learn_s: float = Field(
        86400.0, ge=0, description="History before the device's own rhythm is trusted alone."
    )
    dropout_min_gaps: int = Field(
        16, ge=2, description="Intervals seen before the rhythm is used at all (else the "
        "role's inactivity_s)."
    )
    dropout_false_per_year: float = Field(
        0.1, gt=0, le=100,
        description="The silence that counts as a dropout is long enough that the device's "
        "own message loss (learnt from the readings missing from its gaps) explains it "
        "at most this often per device and year.",
    )
    dropout_memory_s: float = Field(
        14 * 86400.0, gt=0, description="Half-life of the remembered longest normal gap."
    )
    dropout_confirm_s: float = Field(
        120.0, ge=0,
        description="Silence must still hold this long after it is first seen (a backlog "
        "arriving in a burst is not a dropout).",
    )
    # -- spike: a jump that comes back ----------------------------------------------
    spike_min_step: dict[str, float] = Field(
        default_factory=_spike_min_step,
        description="Value keys checked for spikes, and the smallest jump that can be one.",
    )
    spike_k: float = Field(
        8.0, gt=0,
        description="A spike leaves the level by more than this many times the sensor's "
        "typical change between samples (median |change|, robust).",
    )
    spike_max_samples: int = Field(
        3, ge=1, description="At most this many samples away before it is a step, not a spike."
    )
    spike_max_s: float = Field(1800.0, gt=0, description="...and at most this long away.")
    spike_ratio: dict[str, float] = Field(
        default_factory=_spike_ratio,
        description="Keys whose spikes are judged against the sensor's own recent highs, "
        "not its typical change: a collar's activity counts are heavy-tailed and jump "
        "several-fold as a cow gets up, feeds or comes into heat (2-4 times her level). "
        "A reading above this many times its running high (spike_high_half_life_s) is "
        "away - twice the strongest rise of a heat over her daily high - and a spike when "
        "the next reading is back within that high.",
    )
    spike_ratio_min: dict[str, float] = Field(
        default_factory=_spike_ratio_min,
        description="...and at least this much above the level it left (counts per window: "
        "a quiet cow's small high is no measure).",
    )
    spike_high_half_life_s: float = Field(
        86400.0, gt=0,
        description="Half-life of the running high of a spike_ratio key: a cow's highs come "
        "with feeding and milking every day, so a day's high is still remembered through "
        "the night, and a heat's highs fade within days.",
    )
    spike_ratio_learn_s: float = Field(
        86400.0, ge=0, description="History (a full day and night) before a spike_ratio key "
        "is judged.",
    )
    spike_hold_s: float = Field(
        3600.0, ge=0, description="A spike alert stays open this long after the last spike."
    )
    # -- stuck: unchanged for longer than this sensor ever is -------------------------
    stuck_keys: list[str] = Field(
        default_factory=_stuck_keys, description="Value keys checked for flat-lining."
    )
    stuck_margin: float = Field(
        2.0, gt=1, description="Flat this much longer than its longest normal flat stretch."
    )
    stuck_min_s: float = Field(1200.0, gt=0, description="...and at least this long.")
    stuck_min_s_by_key: dict[str, float] = Field(
        default_factory=lambda: {"activity": 7200.0},
        description="...or this long for these keys: a collar's small night-time counts "
        "repeat by chance for an hour; two hours of the same window's counts do not.",
    )
    stuck_rest_ends: dict[str, Literal["lo", "hi"]] = Field(
        default_factory=_stuck_rest_ends,
        description="Keys that rest at one end of their plausible range: humidity at the "
        "top (100 % in condensing air), water flow at the bottom (nobody drinking). There "
        "a flat value is judged stuck only after stuck_ceiling_s, and such a stretch is not "
        "learnt as the key's normal flat stretch. Other keys pinned at an end (an open "
        "thermistor at -40 °C) are judged as usual.",
    )
    stuck_ceiling_s: float = Field(
        12 * 3600.0, gt=0,
        description="...this long: a night's fog clears by day.",
    )
    stuck_min_samples: int = Field(4, ge=2, description="...and over this many samples.")
    stuck_min_vary: float = Field(
        0.05, ge=0, le=1,
        description="Judge only keys that change in at least this share of samples (a tank "
        "level is flat between milkings).",
    )
    stuck_neighbour_s: float = Field(
        2700.0, gt=0,
        description="A climate node flat this long while its neighbours keep changing is "
        "stuck, whatever its own history.",
    )
    stuck_learn_s: float = Field(
        86400.0, ge=0, description="History needed before judging a key."
    )
    stuck_min_changes: int = Field(20, ge=1, description="...and changes seen in it.")
    stuck_chance: float = Field(
        1e-6, gt=0, lt=1,
        description="...and over so many samples that, at the rate its values repeat, "
        "chance would give such a run less often than this.",
    )
    stuck_noise_frac: float = Field(
        0.0, ge=0, lt=1,
        description="Changes smaller than this share of its typical change count as none.",
    )
    stuck_memory_s: float = Field(
        14 * 86400.0, gt=0, description="Half-life of the remembered longest flat stretch."
    )
    # -- drift: a climate node against its neighbours ---------------------------------
    drift_min_abs: dict[str, float] = Field(
        default_factory=_drift_min_abs,
        description="Value keys compared between neighbouring climate nodes, and the "
        "smallest departure from their usual difference that counts as drift.",
    )
    drift_k: float = Field(
        4.0, gt=0, description="...and at least this many times the pair's usual spread."
    )
    drift_smooth_s: float = Field(
        21600.0, gt=0, description="Time constant of the smoothed difference between nodes "
        "(6 h: a node in the afternoon sun differs by a degree or two for a few hours "
        "every day; drift lasts days).",
    )
    drift_learn_s: float = Field(
        86400.0, gt=0, description="Learn each pair's usual difference this long first."
    )
    drift_baseline_s: float = Field(
        7 * 86400.0, gt=0, description="Afterwards it follows slow changes this slowly."
    )
    drift_fresh_s: float = Field(
        1800.0, gt=0, description="A neighbour's value older than this is not compared."
    )
    drift_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Climate nodes per barn (sensor ids); nodes not listed form one group.",
    )
    # -- out of range -------------------------------------------------------------
    range_clear_s: float = Field(
        1800.0, ge=0,
        description="A range alert clears after this long without an impossible value.",
    )
