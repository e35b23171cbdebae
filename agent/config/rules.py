"""Configuration of the dairy rules and the alert lifecycle (``detect.rules``).

Every threshold lives here as a default in a selectable profile, never in the
rule code. Where the numbers come from is in docs/alerts.md and in each
profile's ``source``; numbers marked (unverified) are starting points.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agent.config.base import Section
from agent.config.sensor_health import SensorHealthConfig

Severity = Literal["info", "warning", "critical"]


class AlertPolicy(Section):
    """The alert-fatigue controls of one rule (dairy-rules.md section 9)."""

    severity: Severity = Field("warning", description="Severity when the rule gives none.")
    min_duration_s: float = Field(
        0.0, ge=0, description="The condition must hold this long before the alert is raised."
    )
    min_count: int = Field(
        1, ge=1, description="...and over at least this many consecutive observations."
    )
    debounce_s: float = Field(
        0.0,
        ge=0,
        description="A contrary blip shorter than this neither resets a pending alert nor "
        "clears an open one.",
    )
    clear_after_s: float = Field(
        0.0, ge=0, description="The clear condition must hold this long before clearing."
    )
    clear_count: int = Field(1, ge=1, description="...and over this many observations.")
    escalate_after_s: float | None = Field(
        None,
        gt=0,
        description="An unacknowledged alert moves one escalation step further after this "
        "long (none: never).",
    )
    escalate_severities: list[Severity] = Field(
        default_factory=lambda: list[Severity](["critical"]),
        description="Severities that escalate.",
    )
    snooze_default_s: float = Field(3600.0, gt=0, description="Snooze length when none is given.")

    @model_validator(mode="after")
    def _debounce_fits(self) -> AlertPolicy:
        if self.min_duration_s and self.debounce_s > self.min_duration_s * 10:
            raise ValueError("debounce_s is more than 10x min_duration_s; check the units")
        return self


class RoleMapping(Section):
    """Which firmware names play which role, and which value keys the rules read.

    The defaults are the firmware the agent ships (``firmware_configs/*.yaml``)
    and the value names its Ingestor produces. A reading whose firmware is not
    listed is matched by its value keys, so a new firmware that sends the same
    keys works without a config change.
    """

    climate: list[str] = Field(
        default_factory=lambda: ["barn-climate"],
        description="Firmware names of barn climate nodes (air temperature and humidity).",
    )
    bulk_tank: list[str] = Field(
        default_factory=lambda: ["bulk-tank"],
        description="Firmware names of bulk-tank thermometers.",
    )
    milk_meter: list[str] = Field(
        default_factory=lambda: ["milk-meter"],
        description="Firmware names of in-line milk meters (one reading per cow and milking).",
    )
    collar: list[str] = Field(
        default_factory=lambda: ["neck-collar"],
        description="Firmware names of activity / rumination collars.",
    )
    water: list[str] = Field(
        default_factory=lambda: ["water-flow"],
        description="Firmware names of water flow meters (sensor checks only).",
    )
    rfid: list[str] = Field(
        default_factory=lambda: ["rfid-reader"],
        description="Firmware names of RFID/EID readers at a station (silent between "
        "milkings; their reads are cross-checked with ear-tag cameras).",
    )
    temperature_key: str = Field("temperature_c", description="Air temperature value (°C).")
    humidity_key: str = Field("humidity_pct", description="Relative humidity value (%).")
    milk_temp_key: str = Field("milk_temp_c", description="Bulk-tank milk temperature (°C).")
    agitator_key: str = Field(
        "agitator", description="Optional 0/1 value: the tank's agitator is running."
    )
    wash_key: str = Field("wash", description="Optional 0/1 value: the tank is washing.")
    level_key: str = Field(
        "level_l",
        description="Optional tank level (litres); a rising level means milk is arriving.",
    )
    yield_key: str = Field("yield_kg", description="Milk yield of one milking (kg).")
    conductivity_keys: dict[str, str] = Field(
        default_factory=lambda: {
            "LF": "conductivity_lf",
            "RF": "conductivity_rf",
            "LR": "conductivity_lr",
            "RR": "conductivity_rr",
        },
        description="Quarter name -> value key (mS/cm).",
    )
    activity_key: str = Field(
        "activity", description="Activity counts since the collar's previous reading."
    )
    rumination_key: str = Field(
        "rumination_min", description="Rumination minutes since the collar's previous reading."
    )
    flow_key: str = Field(
        "flow_lpm", description="Water flow (l/min); matches unknown water meters by key."
    )


class CoolingProfile(Section):
    target_c: float = Field(description="Milk must reach this temperature (°C).")
    time_limit_s: float = Field(gt=0, description="...within this long of the anchor.")
    anchor: Literal["start", "peak"] = Field(
        "start",
        description="Count the time limit from the start of the milking (first warm milk) or "
        "from the temperature peak (about the end of the milking).",
    )
    blend_max_c: float | None = Field(
        None, description="Limit for the blend when warm milk joins cooled milk (none: no check)."
    )
    freeze_c: float = Field(-0.5, description="Below this the milk is freezing.")
    source: str = Field("", description="Where the numbers come from.")


def _cooling_profiles() -> dict[str, CoolingProfile]:
    return {
        "us_pmo": CoolingProfile(
            target_c=7.0,
            time_limit_s=2 * 3600,
            anchor="peak",
            blend_max_c=10.0,
            source="US PMO Grade A: 7 °C within 2 h after milking, blend <= 10 °C",
        ),
        "eu_853_2004": CoolingProfile(
            target_c=8.0,
            time_limit_s=3 * 3600,
            anchor="start",
            blend_max_c=None,
            source="Reg. (EC) 853/2004 Annex III IX (daily collection: 8 °C); 3 h from the "
            "start of milking as in CZ decree 287/1999 §44 (unverified for the EU as a whole)",
        ),
        "coop": CoolingProfile(
            target_c=4.0,
            time_limit_s=3 * 3600,
            anchor="start",
            blend_max_c=10.0,
            source="Processor example: < 4 °C at collection (arrabawn.ie); time limit is an "
            "example, set it to the contract",
        ),
    }


class CoolingConfig(Section):
    profile: str = Field("eu_853_2004", description="Key into profiles.")
    profiles: dict[str, CoolingProfile] = Field(
        default_factory=_cooling_profiles, description="Selectable cooling rule sets by name."
    )
    milking_rise_c: float = Field(
        1.0, gt=0, description="A rise this large within rise_window_s means warm milk arrived "
        "in an empty tank."
    )
    rise_window_s: float = Field(900.0, gt=0, description="Window for rise checks.")
    not_cooling_rise_c: float = Field(
        1.5,
        gt=0,
        description="Rising this much within rise_window_s with milk in the tank: it is not "
        "cooling (a working cooler keeps the blend nearly flat).",
    )
    max_milking_s: float = Field(
        3 * 3600.0, gt=0, description="The 'peak' anchor is at most this long after the start."
    )
    hot_grace_s: float = Field(
        600.0, gt=0, description="Time after the first warm milk before first_drop_c counts."
    )
    first_drop_c: float = Field(
        2.0,
        gt=0,
        description="A first milking must have cooled this far below its peak hot_grace_s "
        "after the first warm milk; otherwise the tank is not cooling.",
    )
    wash_detect_c: float = Field(
        45.0, description="Milk never gets this hot; the tank is being washed."
    )
    empty_level_l: float = Field(
        50.0, ge=0,
        description="With a level value: at or below this the tank holds no milk to cool "
        "(collected, or waiting for the first milking), so no cooling rule applies.",
    )
    milk_in_c: float = Field(
        32.0, description="Temperature of milk arriving from the cow, for the mixing check "
        "(a low estimate: lower makes a warming blend look uncooled sooner)."
    )
    min_cooling_c: float = Field(
        0.3, ge=0,
        description="With a level value, a rise counts as 'not cooling' only when the milk "
        "is less than this much colder than warm milk mixing in alone would make it (a "
        "working cooler on a small volume may still warm during a milking).",
    )
    stalled_run_s: float | None = Field(
        1200.0, gt=0,
        description="With cooled milk in storage: the agitator (which runs with the "
        "compressor) on this long without a break, no milk arriving (level flat) and the "
        "milk not getting colder means the cooler runs but does not cool. None: off, for "
        "tanks that stir continuously.",
    )
    stalled_min_drop_c: float = Field(
        0.2, ge=0, description="A running cooler takes the milk at least this much colder "
        "within stalled_run_s."
    )
    level_rise_l: float = Field(
        5.0, gt=0, description="A level rise larger than this within stalled_run_s means milk "
        "is arriving (a milking), which the blend checks judge instead."
    )
    clear_margin_c: float = Field(
        0.3, ge=0, description="Hysteresis: clear only this far below the limit."
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            severity="critical",
            min_duration_s=240,
            min_count=3,
            debounce_s=300,
            clear_after_s=900,
            clear_count=3,
            escalate_after_s=1800,
        )
    )

    @model_validator(mode="after")
    def _profile_exists(self) -> CoolingConfig:
        if self.profile not in self.profiles:
            raise ValueError(f"cooling profile {self.profile!r} not in profiles")
        return self


class HeatStressProfile(Section):
    raise_thi: float = Field(72.0, description="THI at which heat stress starts.")
    clear_thi: float = Field(70.0, description="THI below which it ends (hysteresis).")
    critical_thi: float = Field(78.0, description="Milk yield seriously affected above this.")
    load_base_thi: float = Field(68.0, description="THI-hours count above this (cumulative).")
    load_critical_thi_h: float = Field(
        60.0, gt=0, description="THI-hours in the last 24 h that make the alert critical."
    )
    source: str = Field("", description="Where the numbers come from.")


def _heat_profiles() -> dict[str, HeatStressProfile]:
    return {
        "classic": HeatStressProfile(source="THI 72 onset, 78 severe (De Vries; indicative)"),
        "high_yield": HeatStressProfile(
            raise_thi=68.0,
            clear_thi=66.0,
            load_base_thi=65.0,
            source="THI 68 onset for high-producing cows (De Vries, UF)",
        ),
    }


class HeatStressConfig(Section):
    profile: str = Field("classic", description="Key into profiles.")
    profiles: dict[str, HeatStressProfile] = Field(
        default_factory=_heat_profiles, description="Selectable THI rule sets by name."
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            severity="warning",
            min_duration_s=1800,
            min_count=3,
            debounce_s=900,
            clear_after_s=1800,
            clear_count=3,
            escalate_after_s=3600,
        )
    )

    @model_validator(mode="after")
    def _profile_exists(self) -> HeatStressConfig:
        if self.profile not in self.profiles:
            raise ValueError(f"heat stress profile {self.profile!r} not in profiles")
        return self


class MastitisConfig(Section):
    baseline_milkings: int = Field(
        14, ge=3, le=100, description="Quarter baseline: mean of this many previous milkings."
    )
    min_baseline_milkings: int = Field(6, ge=2, description="Do not judge before this many.")
    rel_rise: float = Field(
        0.15, gt=0, description="Quarter EC this far above its own baseline (10-15% in studies)."
    )
    quarter_ratio: float = Field(
        1.15, gt=1, description="Quarter EC / the median of the cow's other quarters at the same "
        "milking, over this quarter's usual ratio (unverified default)."
    )
    absolute_ms_cm: float = Field(8.0, gt=0, description="EC above this is high (DeLaval).")
    yield_drop: float = Field(
        0.2, gt=0, lt=1, description="Yield this far below the cow's median of recent milkings."
    )
    persist_milkings: int = Field(
        2, ge=1, description="A quarter's EC evidence alone must persist over this many "
        "consecutive milkings (the FutureDairy study used 3)."
    )
    clinical_at_once: bool = Field(
        False, description="EC evidence with a yield drop or an absolute level at one milking "
        "raises 'likely clinical' at once; false: only persisting evidence raises (one abnormal "
        "milking, e.g. an incomplete milking, then raises nothing)."
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            severity="warning", min_count=1, clear_count=2, escalate_after_s=12 * 3600
        )
    )


class EstrusConfig(Section):
    window_s: float = Field(
        4 * 3600, gt=0,
        description="The signal is the median activity ratio of the readings in this window, "
        "so a rise must be sustained over hours (estrus lasts 12-18 h); a one-hour "
        "disturbance moves a median little. 4 h, not 6: heat within 6 h of onset.",
    )
    long_window_s: float | None = Field(
        8 * 3600, gt=0,
        description="A second, longer window for weak heats, judged the same way against "
        "its own typical deviation: a median over 8 h wavers less than one over 4 h, so a "
        "weak rise held that long (about 2x for 12-16 h) is found although the 4-h median "
        "never crosses; a cow in her first `warmup_days` by her place in the herd over "
        "this window. None: off.",
    )
    raise_ratio: float = Field(
        1.5, gt=1, description="Lowest activity multiple of her own baseline that can raise."
    )
    raise_z: float = Field(
        4.0, gt=0,
        description="...and the signal must exceed this many of the cow's own typical "
        "deviations (RMS, log scale), so restless cows need a larger rise than calm ones.",
    )
    clear_ratio: float = Field(1.3, gt=0, description="Lowest multiple below which it clears.")
    clear_z: float = Field(
        2.0, ge=0, description="...and below this many of her typical deviations (hysteresis)."
    )
    spread_days: float = Field(
        3.0, gt=0, description="Time constant of the cow's typical deviation (EWMA)."
    )
    baseline_alpha: float = Field(
        0.15, gt=0, le=1, description="EWMA weight of one hour of samples per hour of day."
    )
    herd_min_cows: int = Field(
        5, ge=2,
        description="With this many collared cows, a rise the whole herd shares (regrouping, "
        "hoof trimming, people in the barn) is subtracted: heat is individual.",
    )
    herd_disturbed_ratio: float = Field(
        1.2, gt=1,
        description="When the herd's median activity is this multiple of normal, the herd "
        "is disturbed: no new heat is raised until it settles (half a window later).",
    )
    max_heat_s: float = Field(
        30 * 3600, gt=0,
        description="A rise lasting longer than this is a new normal, not a heat: her "
        "baseline adopts it again.",
    )
    warmup_days: float = Field(
        7.0, ge=0,
        description="Before this much history a cow is judged against the herd (her place "
        "among the cows heard at the same time), after it against her own baseline.",
    )
    young_min_h: float = Field(
        4.0, ge=0,
        description="Hours a new cow is watched (her usual place in the herd) before any heat "
        "(one window: a heat on her first day is still found).",
    )
    herd_crowd_share: float = Field(
        0.1, gt=0, le=1,
        description="When more than this share of the herd (and more than 2 cows) stand out "
        "at once, it is a disturbance, not that many heats: no new heat for half a window.",
    )
    min_samples: int = Field(5, ge=1, description="Samples per hour of day before judging.")
    tied_animals: list[str] = Field(
        default_factory=list,
        description="Tied cows show damped activity: their alerts are 'info' with low confidence.",
    )
    calving_quiet_s: float = Field(
        3 * 86400, ge=0,
        description="After a calving (a farm event) her activity is no heat: not raised.",
    )
    move_quiet_s: float = Field(
        86400, ge=0,
        description="After a pen or group move (a farm event) the new pen stirs her up: "
        "not raised.",
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            # The 4-h median already asks for a sustained rise: 30 min on top, not 1 h.
            severity="info", min_duration_s=1800, min_count=2, clear_after_s=3 * 3600,
            clear_count=3,
        )
    )

    @model_validator(mode="after")
    def _long_is_longer(self) -> EstrusConfig:
        if self.long_window_s is not None and self.long_window_s <= self.window_s:
            raise ValueError("long_window_s must be longer than window_s (or null: off)")
        return self


class RuminationConfig(Section):
    drop_min: float = Field(
        60.0, gt=0, description="Minutes/day below the cow's baseline to raise, at least."
    )
    drop_frac: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="...and this share of her baseline. SCR calls 30-50 min/day significant, "
        "but ordinary day-to-day variation reaches that across a herd.",
    )
    clear_min: float = Field(30.0, ge=0, description="Clear when the drop is below this.")
    baseline_days: int = Field(7, ge=2, le=60, description="Baseline: median of these days.")
    min_baseline_days: int = Field(3, ge=1, description="Do not judge before this many days.")
    min_coverage: float = Field(
        0.8, gt=0, le=1, description="Judge only when this share of the last 24 h has data."
    )
    calving_suppress_s: float = Field(
        3 * 86400, ge=0,
        description="After a calving (a farm event), a drop is expected: no alert; her "
        "baseline restarts from the days after calving.",
    )
    move_suppress_s: float = Field(
        2 * 86400, ge=0,
        description="After a pen or group move (a farm event), a drop is expected: no alert.",
    )
    heat_suppress_s: float = Field(
        86400, ge=0,
        description="After a heat recorded by the herd system, cows ruminate less for a "
        "day: no alert.",
    )
    dry_off_rebaseline: bool = Field(
        True, description="A dry-off (new diet) restarts her baseline, like a calving."
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            # 16 h: one low day (its 24 h window is below the limit for ~14 h) is not
            # an illness; a drop lasting days is.
            severity="warning", min_duration_s=16 * 3600, min_count=4, debounce_s=3600,
            clear_after_s=6 * 3600, clear_count=3, escalate_after_s=24 * 3600,
        )
    )


class SensorLimits(Section):
    lo: float = Field(description="Lowest physically possible value.")
    hi: float = Field(description="Highest physically possible value.")
    max_rate_per_s: float | None = Field(
        None, gt=0, description="Fastest possible change per second (none: no jump check)."
    )
    stuck_after_s: float | None = Field(
        None, gt=0, description="Unchanged this long while it normally varies: stuck."
    )
    resolution: float = Field(0.0, ge=0, description="Changes up to this count as unchanged.")


def _limits() -> dict[str, SensorLimits]:
    return {
        "temperature_c": SensorLimits(lo=-40, hi=60, max_rate_per_s=0.05, stuck_after_s=3 * 3600),
        "humidity_pct": SensorLimits(lo=0, hi=100, max_rate_per_s=0.5, stuck_after_s=3 * 3600),
        "milk_temp_c": SensorLimits(lo=-5, hi=95, max_rate_per_s=1.0, stuck_after_s=2 * 3600),
        "agitator": SensorLimits(lo=0, hi=1),
        "wash": SensorLimits(lo=0, hi=1),
        "level_l": SensorLimits(lo=0, hi=100000),
        "yield_kg": SensorLimits(lo=0, hi=60),
        "conductivity_lf": SensorLimits(lo=0.5, hi=20),
        "conductivity_rf": SensorLimits(lo=0.5, hi=20),
        "conductivity_lr": SensorLimits(lo=0.5, hi=20),
        "conductivity_rr": SensorLimits(lo=0.5, hi=20),
        "duration_s": SensorLimits(lo=0, hi=3600),
        "activity": SensorLimits(lo=0, hi=100000),
        "rumination_min": SensorLimits(lo=0, hi=1440),
        "flow_lpm": SensorLimits(lo=0, hi=500),
        "battery_v": SensorLimits(lo=0, hi=5),
        "total_l": SensorLimits(lo=0, hi=1e12),
    }


def _inactivity() -> dict[str, float]:
    return {
        # Climate radios go quiet for 16-25 min now and then; until a node's own
        # longest gaps are learnt (its first day) only 30 min of silence counts.
        "climate": 1800.0,
        "bulk_tank": 900.0,
        "milk_meter": 16 * 3600.0,
        "collar": 3 * 3600.0,
        "water": 1800.0,
        "rfid": 16 * 3600.0,
        "other": 3600.0,
    }


class PlausibilityConfig(Section):
    limits: dict[str, SensorLimits] = Field(
        default_factory=_limits, description="Per value key; keys not listed are not checked."
    )
    inactivity_s: dict[str, float] = Field(
        default_factory=_inactivity, description="Per role: silence longer than this is a dropout."
    )
    jump_count: int = Field(
        3, ge=1, description="Impossible jumps within jump_window_s before an 'erratic' alert."
    )
    jump_window_s: float = Field(3600.0, gt=0, description="Window for counting jumps.")
    range_count: int = Field(2, ge=1, description="Consecutive out-of-range values to alert.")
    calibration_check_s: float = Field(3600.0, gt=0, description="How often to ask.")
    health: SensorHealthConfig = Field(
        default_factory=SensorHealthConfig,
        description="Learnt checks: spikes, stuck, dropout by rhythm, drift between nodes.",
    )
    alerts: AlertPolicy = Field(
        default_factory=lambda: AlertPolicy(
            severity="warning", clear_count=1, escalate_after_s=4 * 3600,
        )
    )


class RulesConfig(Section):
    enabled: bool = Field(True, description="Run the dairy rules.")
    mapping: RoleMapping = Field(default_factory=RoleMapping)
    cooling: CoolingConfig = Field(default_factory=CoolingConfig)
    heat_stress: HeatStressConfig = Field(default_factory=HeatStressConfig)
    mastitis: MastitisConfig = Field(default_factory=MastitisConfig)
    estrus: EstrusConfig = Field(default_factory=EstrusConfig)
    rumination: RuminationConfig = Field(default_factory=RuminationConfig)
    plausibility: PlausibilityConfig = Field(default_factory=PlausibilityConfig)
    farm_events_topic: str | None = Field(
        None,
        description="MQTT topic the farm system publishes events to (one JSON event a "
        "message: calving, dry_off, pen_move, insemination, heat, milking, "
        "milking_schedule, collection); <ingest.topic_prefix or barn>/farm/events when "
        "empty. It must be inside mqtt.topics.",
    )
    escalation_channels: list[str] = Field(
        default_factory=lambda: ["status_page", "mqtt", "relay"],
        description="Escalation steps in order; an alert starts at the first.",
    )
