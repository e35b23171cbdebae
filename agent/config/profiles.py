"""Runtime profiles (``profiles`` and ``profile_schedule``): named partial
overrides of the rule thresholds and of the cameras' sampling, switched while
the agent runs (agent/runtime/profiles.py, docs/profiles.md).

A profile's ``rules`` is any part of ``detect.rules``, nested as there; it is
merged onto the base ``detect.rules`` and the result validated as a whole, so
a bad key or value is refused at load with its full path
(``profiles.heat_wave.rules.heat_stress.profiles.classic.raise_thi``). The
profile named ``normal`` is the base config itself and cannot be redefined.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from agent.config.base import Section
from agent.config.rules import RulesConfig

NORMAL = "normal"
PROFILE_NAME = r"^[A-Za-z0-9_-]{1,32}$"
# The farm's wiring, not a mode: a profile may not change these.
FIXED_RULE_KEYS = ("mapping", "farm_events_topic", "escalation_channels")


class CameraProfile(Section):
    """A camera's sampling while a profile is active."""

    enabled: bool = Field(
        True, description="false: the camera's frames skip the models (counted as 'budget' "
        "drops) while the profile is active; the camera stays connected.",
    )
    infer_fps: float | None = Field(
        None, gt=0, le=60,
        description="Inference budget (frames per second to the models) instead of the "
        "camera's own infer_fps; none: the camera's own.",
    )


class ProfileConfig(Section):
    """One named profile: only what differs from the base config."""

    description: str = Field("", description="What the profile is for (shown on the page).")
    rules: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of detect.rules, nested as there (any key but "
        f"{', '.join(FIXED_RULE_KEYS)}).",
    )
    cameras: dict[str, CameraProfile] = Field(
        default_factory=dict, description="Camera id -> its sampling in this profile."
    )


class ScheduleEntry(Section):
    at: str = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Time of day, HH:MM, on the clock named by profile_clock.",
    )
    profile: str = Field(description="The profile that starts then ('normal': the base).")

    @field_validator("at", mode="before")
    @classmethod
    def _sexagesimal(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted 16:00 as the number 960 (base 60): take it back.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return f"{value // 60:02d}:{value % 60:02d}"
        return value


ProfileClock = Literal["local", "utc"]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested dicts merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_rules(base: RulesConfig, profile: ProfileConfig, name: str) -> RulesConfig:
    """The rules config with ``profile`` applied; ValueError naming the bad key."""
    where = f"profiles.{name}.rules"
    for key in FIXED_RULE_KEYS:
        if key in profile.rules:
            raise ValueError(f"{where}.{key}: a profile cannot change {key} "
                             "(the farm's wiring); set it in detect.rules")
    try:
        return RulesConfig.model_validate(deep_merge(base.model_dump(), profile.rules))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ValueError(f"{where}.{loc}: {first['msg']}{more}") from None


def check_profiles(rules: RulesConfig, profiles: dict[str, ProfileConfig],
                   camera_ids: set[str]) -> None:
    """Every profile merges and validates and names only known cameras:
    ValueError naming the first bad key."""
    for name, profile in profiles.items():
        if name == NORMAL:
            raise ValueError(f"profiles.{NORMAL}: '{NORMAL}' is the base config; "
                             "give the profile another name")
        if not re.fullmatch(PROFILE_NAME, name):
            raise ValueError(f"profiles.{name}: a name is 1-32 letters, digits, _ or -")
        merged_rules(rules, profile, name)
        for cam in profile.cameras:
            if cam not in camera_ids:
                raise ValueError(f"profiles.{name}.cameras.{cam}: no camera with that id "
                                 "in cameras")


def check_schedule(schedule: list[ScheduleEntry], names: set[str]) -> None:
    """The schedule names only known profiles, each time once."""
    seen: set[str] = set()
    for i, entry in enumerate(schedule):
        if entry.profile != NORMAL and entry.profile not in names:
            raise ValueError(f"profile_schedule.{i}.profile: {entry.profile!r} is not "
                             f"'{NORMAL}' or a name in profiles")
        if entry.at in seen:
            raise ValueError(f"profile_schedule.{i}.at: {entry.at} is given twice")
        seen.add(entry.at)
