"""RuleEngine: routes each reading to the dairy rules for its role, runs the
sensor checks first (a faulty sensor feeds no animal or tank rule), and turns
findings into alerts through the lifecycle in ``agent.detect.alerts``.

Time: every duration is engine time, the reading's monotonic stamp plus an
offset. After a restore from a state saved in another boot (monotonic time
restarts), the offset makes engine time continue where it stopped, so the
downtime counts as zero rather than as a negative or huge span.

The sensor's clock: a reading whose device sends its own timestamp
(``source_ts``) is judged by the dairy rules at the time it was measured, not
when it arrived: its engine time is moved back by how late it came (arrival
wall time minus ``source_ts``, when the gateway's wall clock is synced; at most
``MAX_LATE_S``). After an outage the broker delivers hours of readings within
seconds, and they are still judged as hours. Readings without a device
timestamp (the shipped collar and water firmware send none), or that arrive
before the gateway's clock is synced, are judged at arrival. Per sensor the
time never goes back (a resent older message is judged at the latest time
seen). The sensor checks judge values on the same sensor time and silence on
arrival time: silence is what the gateway hears.

Farm events (``agent.detect.farm_events``: calvings, dry-offs, pen moves,
inseminations, heats, milkings) reach the rules through ``on_farm_event``, at
the time they happened (up to ``FARM_MAX_LATE_S`` back). Rumination and
mastitis take them in their own ``note_event``; estrus findings are checked
here against ``self.farm``: no heat is raised in the quiet spell after a
calving or a move, and a heat the herd system recorded, or an insemination
about 21 days earlier, is noted on the alert (never suppressing it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from agent.clock import Clock, boot_id
from agent.config.rules import AlertPolicy, RulesConfig
from agent.detect.alerts import AlertManager
from agent.detect.farm_events import FarmContext, FarmEvent
from agent.detect.rules.base import Finding, Tracked
from agent.detect.rules.body_condition import POLICIES as VISION_POLICIES
from agent.detect.rules.cooling import CoolingRule
from agent.detect.rules.estrus import EstrusRule
from agent.detect.rules.heat_stress import HeatStressRule
from agent.detect.rules.mastitis import MastitisRule
from agent.detect.rules.plausibility import RULES as SENSOR_RULES
from agent.detect.rules.plausibility import CalibrationCheck, PlausibilityRule
from agent.detect.rules.rumination import RuminationRule
from agent.records import Alert, Reading, Stamp

STATE_VERSION = 1
# A reading later than this (by its device's clock) is taken as a wrong device
# clock rather than a backlog: judged at arrival.
MAX_LATE_S = 7 * 86400.0
# A farm event recorded later than this is dated this far back (every quiet
# spell it starts is shorter than this).
FARM_MAX_LATE_S = 60 * 86400.0
ROLES = ("climate", "bulk_tank", "milk_meter", "collar", "water", "rfid")


class _Rule(Protocol):
    name: str
    roles: tuple[str, ...]

    tracked: Tracked

    def on_reading(self, reading: Reading, t: float) -> list[Finding]: ...
    def tick(self, t: float) -> list[Finding]: ...
    def to_state(self) -> dict[str, Any]: ...
    def from_state(self, state: dict[str, Any]) -> None: ...


class RuleEngine:
    def __init__(self, config: Any, clock: Clock,
                 calibration: CalibrationCheck | None = None) -> None:
        cfg: RulesConfig = getattr(config, "rules", config)
        if not isinstance(cfg, RulesConfig):
            raise TypeError("RuleEngine needs a RulesConfig or a DetectConfig")
        self.cfg = cfg
        self.clock = clock
        m = cfg.mapping
        self.rumination = RuminationRule(cfg.rumination, m)
        self.mastitis = MastitisRule(cfg.mastitis, m)
        self.estrus = EstrusRule(cfg.estrus, m)
        self.cooling = CoolingRule(cfg.cooling, m)
        self.heat_stress = HeatStressRule(cfg.heat_stress, m)
        self.rules: list[_Rule] = [
            self.cooling, self.heat_stress, self.mastitis, self.estrus, self.rumination,
        ]
        self.farm = FarmContext()
        self.cooling.farm = self.farm
        self.cooling.wall_shift = self._wall_shift
        self.sensors = PlausibilityRule(cfg.plausibility, calibration, m)
        self.by_role: dict[str, list[_Rule]] = {r: [] for r in ROLES}
        for rule in self.rules:
            for role in rule.roles:
                self.by_role[role].append(rule)
        self._firmware = {fw: role for role in ROLES for fw in getattr(m, role)}
        self._policies: dict[str, AlertPolicy] = {}
        self._set_policies(cfg)
        self.alerts = AlertManager(self._policy, self._stamp, list(cfg.escalation_channels))
        self.alerts.rules_seen.update(self.rule_names())
        for rule in self.rules:  # the lifecycle drops a quiet finding with no track
            rule.tracked = self.alerts.tracked
        self.offset = 0.0
        self.last_t = 0.0
        self.boot = boot_id()
        self._rebase = False
        self._sensor_t: dict[str, float] = {}  # per sensor: the latest rule time

    # -- public API ---------------------------------------------------------
    def reconfigure(self, cfg: RulesConfig) -> None:
        """New thresholds and alert policies (a runtime profile), keeping every
        rule's learnt state and the open alerts. The role mapping and the
        escalation channels are the farm's wiring: they cannot change here."""
        if cfg.mapping != self.cfg.mapping or cfg.escalation_channels != \
                self.cfg.escalation_channels:
            raise ValueError("a reconfigure cannot change the mapping or escalation_channels")
        self.cfg = cfg
        self.cooling.cfg = cfg.cooling
        self.cooling.profile = cfg.cooling.profiles[cfg.cooling.profile]
        self.heat_stress.cfg = cfg.heat_stress
        self.heat_stress.profile = cfg.heat_stress.profiles[cfg.heat_stress.profile]
        self.mastitis.cfg = cfg.mastitis
        self.estrus.cfg = cfg.estrus
        self.rumination.cfg = cfg.rumination
        self.sensors.reconfigure(cfg.plausibility)
        self._set_policies(cfg)

    def rule_names(self) -> list[str]:
        return [r.name for r in self.rules] + list(SENSOR_RULES)

    def role_of(self, reading: Reading) -> str:
        role = self._firmware.get(reading.firmware)
        if role is not None:
            return role
        m, keys = self.cfg.mapping, reading.values.keys()
        if m.milk_temp_key in keys:
            return "bulk_tank"
        if any(k in keys for k in m.conductivity_keys.values()):
            return "milk_meter"
        if m.activity_key in keys or m.rumination_key in keys:
            return "collar"
        if m.temperature_key in keys and m.humidity_key in keys:
            return "climate"
        if m.flow_key in keys:
            return "water"
        return "other"

    def on_reading(self, reading: Reading) -> list[Alert]:
        if not self.cfg.enabled:
            return []
        stamp = reading.stamp
        if self._rebase or stamp.boot_id != self.boot:
            arrival = self._time(stamp.mono_ns / 1e9, stamp.boot_id)
        else:  # ``_time`` without a rebase to do, written out (every reading)
            arrival = stamp.mono_ns / 1e9 + self.offset
            self.last_t = max(self.last_t, arrival)
        t = self.sensor_time(reading, arrival)
        role = self._firmware.get(reading.firmware)
        if role is None:
            role = self.role_of(reading)
        sensors = self.sensors
        findings, bad = sensors.check(reading, role, arrival, t)
        out: list[Alert] = []
        for f in findings:
            out += self.alerts.process(f)
        if sensors.faulty(reading.sensor_id):
            return out
        if bad:
            values = {k: v for k, v in reading.values.items() if k not in bad}
            reading = dataclasses.replace(reading, values=values)
        rules = self.by_role.get(role)
        if rules:
            for rule in rules:
                found = rule.on_reading(reading, t)
                if found:
                    for f in found:
                        if f.rule == "estrus" and self.farm.last:
                            self._estrus_farm(f, t)
                        out += self.alerts.process(f)
        return out

    def on_farm_event(self, event: FarmEvent, late_s: float = 0.0,
                      now_mono: float | None = None) -> list[Alert]:
        """A farm event, received ``late_s`` seconds after it happened (a future
        one counts as now); the rules that need it take note."""
        if not self.cfg.enabled:
            return []
        mono = self.clock.monotonic() if now_mono is None else now_mono
        t = self._time(mono, self.boot) - min(max(late_s, 0.0), FARM_MAX_LATE_S)
        self.farm.note(event, t)
        if event.animal is not None:
            self._note_cow(event.type, event.animal, t)
        return []

    def sensor_time(self, reading: Reading, arrival: float) -> float:
        """Engine time at which the device measured ``reading`` (see the module doc)."""
        t = arrival
        src = reading.source_ts
        if src is not None and reading.stamp.clock_synced:
            late = reading.stamp.wall_ts - src
            if 0.0 < late <= MAX_LATE_S:
                t = arrival - late
        last = self._sensor_t.get(reading.sensor_id)
        if last is not None and t < last:
            t = last
        self._sensor_t[reading.sensor_id] = t
        return t

    def tick(self, now_mono: float | None = None) -> list[Alert]:
        """Periodic checks (silence, calibration, escalation, snooze end); seconds."""
        if not self.cfg.enabled:
            return []
        mono = self.clock.monotonic() if now_mono is None else now_mono
        t = self._time(mono, self.boot)
        out: list[Alert] = []
        if self.sensors.due(t):
            for f in self.sensors.tick(t):
                out += self.alerts.process(f)
        for rule in self.rules:
            for f in rule.tick(t):
                out += self.alerts.process(f)
        out += self.alerts.tick(t)
        return out

    def feedback(self, alert_record_id: str, verdict: str) -> None:
        """Technician verdict ('confirmed' or 'rejected') on any record of an alert."""
        self.alerts.feedback(alert_record_id, verdict)

    def confirm(self, alert_id: str) -> None:
        self.feedback(alert_id, "confirmed")

    def reject(self, alert_id: str) -> None:
        self.feedback(alert_id, "rejected")

    def acknowledge(self, alert_id: str) -> bool:
        return self.alerts.acknowledge(alert_id)

    def snooze(self, alert_id: str, seconds: float | None = None,
               now_mono: float | None = None) -> bool:
        mono = self.clock.monotonic() if now_mono is None else now_mono
        return self.alerts.snooze(alert_id, self._time(mono, self.boot), seconds)

    def precision(self) -> dict[str, float | None]:
        return self.alerts.precision()

    def note_calving(self, animal_id: str, now_mono: float | None = None) -> None:
        mono = self.clock.monotonic() if now_mono is None else now_mono
        t = self._time(mono, self.boot)
        self.farm.note(FarmEvent(t, "calving", animal_id), t)
        self._note_cow("calving", animal_id, t)

    def open_alerts(self) -> list[dict[str, Any]]:
        return [{"alert_id": tr.alert_id, "rule": tr.rule, "subject": tr.subject,
                 "cause": tr.cause or None,
                 "severity": tr.severity, "message": tr.message, "escalation": tr.escalation,
                 "snoozed": bool(tr.snoozed_until), "acknowledged": tr.acked}
                for tr in self.alerts.tracks.values() if tr.open]

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state; store it (SQLite) and pass it to from_state after a restart."""
        return {
            "version": STATE_VERSION,
            "boot_id": self.boot,
            "last_t": self.last_t,
            "offset": self.offset,
            "rules": {r.name: r.to_state() for r in self.rules},
            "sensors": self.sensors.to_state(),
            "alerts": self.alerts.to_state(),
            "farm": self.farm.to_state(),
        }

    def from_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            return  # an unknown layout: start fresh rather than misread it
        for rule in self.rules:
            if rule.name in state["rules"]:
                rule.from_state(state["rules"][rule.name])
        self.sensors.from_state(state["sensors"])
        self.alerts.from_state(state["alerts"])
        self.farm = FarmContext.from_state(state.get("farm", {}))
        self.cooling.farm = self.farm
        self.alerts.rules_seen.update(self.rule_names())
        self.boot, self.last_t, self.offset = state["boot_id"], state["last_t"], state["offset"]
        self._rebase = True

    # -- internals ---------------------------------------------------------
    def _note_cow(self, kind: str, animal: str, t: float) -> None:
        self.rumination.note_event(kind, animal, t)
        self.mastitis.note_event(kind, animal, t)
        note = getattr(self.estrus, "note_event", None)  # for estrus.py to take up
        if note is not None:
            note(kind, animal, t)

    def _estrus_farm(self, f: Finding, t: float) -> None:
        """An estrus finding against the herd system's events (see the module doc)."""
        animal = f.animal_id
        if animal is None:
            return
        farm, cfg = self.farm, self.cfg.estrus
        f.extra.update(farm.heat_note(animal, t))
        if f.status == "raise":
            for kind, span in (("calving", cfg.calving_quiet_s),
                               ("pen_move", cfg.move_quiet_s)):
                if farm.within(animal, kind, t, span):
                    f.status = "hold"
                    f.extra["farm_event"] = kind
                    break

    def _wall_shift(self) -> float | None:
        """Wall time minus engine time, while the wall clock is set."""
        clock = self.clock
        if not clock.synced():
            return None
        return clock.wall() - (clock.monotonic() + self.offset)

    def _time(self, mono_s: float, boot: str) -> float:
        if self._rebase:
            self._rebase = False
            if boot != self.boot or mono_s + self.offset < self.last_t:
                self.offset = self.last_t - mono_s
        self.boot = boot
        t = mono_s + self.offset
        self.last_t = max(self.last_t, t)
        return t

    def _set_policies(self, cfg: RulesConfig) -> None:
        self._policies.clear()
        self._policies.update({
            "cooling": cfg.cooling.alerts, "heat_stress": cfg.heat_stress.alerts,
            "mastitis": cfg.mastitis.alerts, "estrus": cfg.estrus.alerts,
            "rumination": cfg.rumination.alerts,
        })
        self._policies.update(VISION_POLICIES)  # bcs_loss, milk_abnormal

    def _policy(self, rule: str) -> AlertPolicy:
        return self._policies.get(rule, self.cfg.plausibility.alerts)

    def _stamp(self, t: float) -> Stamp:
        # An alert found in a late reading carries the wall time it was measured.
        wall = self.clock.wall() - max(0.0, self.last_t - t)
        return Stamp(wall_ts=wall, mono_ns=int((t - self.offset) * 1e9),
                     boot_id=self.boot, clock_synced=self.clock.synced())
