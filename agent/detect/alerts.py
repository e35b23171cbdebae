"""The alert lifecycle: findings in, ``agent.records.Alert`` records out.

One track per (rule, subject, cause) de-duplicates: an open alert is updated, never
doubled. A track raises once the condition has held for the policy's minimum
duration and count (short contrary blips inside the debounce window do not
reset it), clears once the clear condition has held long enough (hysteresis:
the band between raise and clear thresholds keeps it open), escalates when a
critical alert stays unacknowledged, and can be snoozed: silenced for a while,
returning if the condition still holds. Technicians confirm or reject alerts;
precision per rule is confirmed / (confirmed + rejected).

Record ids: the raised record's id is the alert id, stable_id(rule, subject,
episode start); later records of the same episode (updated, cleared) get
stable_id(alert id, state, n) so the buffer does not drop them as duplicates,
and carry the alert id in ``details["alert_id"]``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.config.rules import AlertPolicy
from agent.detect.rules.base import SEVERITY_RANK, Finding
from agent.records import Alert, Stamp
from agent.records.types import stable_id

CONFIRMED, REJECTED = "confirmed", "rejected"
_VERDICTS = {"confirmed": CONFIRMED, "confirm": CONFIRMED, "true": CONFIRMED,
             "rejected": REJECTED, "reject": REJECTED, "false": REJECTED}
MAX_ID_MAP = 20000  # record id -> alert id entries kept for feedback lookups

StampFn = Callable[[float], Stamp]


@dataclass(slots=True)
class Track:
    rule: str
    subject: str
    sensor_id: str | None = None
    animal_id: str | None = None
    pending_since: float | None = None
    pending_count: int = 0
    contra_since: float | None = None
    contra_count: int = 0
    open: bool = False
    alert_id: str | None = None
    episode_start: float = 0.0
    severity: str = "warning"
    escalation: int = 0
    escalated_t: float = 0.0
    acked: bool = False
    snoozed_until: float = 0.0
    unannounced: bool = False  # opened while snoozed: 'raised' not sent yet
    seq: int = 0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cause: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.subject, self.cause)


class AlertManager:
    """Runs every track; ``policy_for(rule)`` gives that rule's AlertPolicy."""

    def __init__(self, policy_for: Callable[[str], AlertPolicy], stamp: StampFn,
                 channels: list[str]) -> None:
        self.policy_for = policy_for
        self.stamp = stamp
        self.channels = channels or ["status_page"]
        self.tracks: dict[tuple[str, str, str], Track] = {}
        self.verdicts: dict[str, tuple[str, str]] = {}  # alert id -> (rule, verdict)
        self.ids: OrderedDict[str, str] = OrderedDict()  # record id -> alert id
        self.rules_seen: set[str] = set()
        self.rule_of: dict[str, str] = {}  # alert id -> rule, for feedback

    # -- findings ---------------------------------------------------------
    def tracked(self, rule: str, subject: str, cause: str) -> bool:
        """Whether a track exists: without one, ``process`` drops any finding
        short of "raise" (the rules use this to skip building it)."""
        return (rule, subject, cause) in self.tracks

    def process(self, f: Finding) -> list[Alert]:
        self.rules_seen.add(f.rule)
        key = (f.rule, f.subject, f.cause)
        tr = self.tracks.get(key)
        if tr is None:
            if f.status != "raise":
                return []  # nothing pending, nothing open: no track needed
            tr = self.tracks[key] = Track(f.rule, f.subject, f.sensor_id, f.animal_id,
                                          cause=f.cause)
        pol = self.policy_for(f.rule)
        out: list[Alert] = []
        if f.status == "raise":
            tr.contra_since, tr.contra_count = None, 0
            severity = f.severity or pol.severity
            tr.message, tr.details = f.explanation(), self._details(f)
            if not tr.open:
                if tr.pending_since is None:
                    tr.pending_since, tr.pending_count = f.at, 0
                tr.pending_count += 1
                if (f.at - tr.pending_since >= pol.min_duration_s
                        and tr.pending_count >= pol.min_count):
                    out += self._open(tr, f.at, severity)
            elif SEVERITY_RANK[severity] > SEVERITY_RANK[tr.severity]:
                tr.severity = severity
                out += self._emit(tr, "updated", f.at, note="severity raised")
        elif tr.open and f.status == "hold":
            tr.contra_since, tr.contra_count = None, 0  # hysteresis: the band keeps it open
        else:  # clear, or (while pending) anything short of raise
            if tr.contra_since is None:
                tr.contra_since = f.at
            tr.contra_count += 1
            held = f.at - tr.contra_since
            if tr.open:
                if held >= pol.clear_after_s and tr.contra_count >= pol.clear_count:
                    out += self._close(tr, f.at, f.summary)
            elif held >= pol.debounce_s:
                del self.tracks[key]
        return out

    def tick(self, t: float) -> list[Alert]:
        out: list[Alert] = []
        for tr in list(self.tracks.values()):
            if not tr.open:
                continue
            pol = self.policy_for(tr.rule)
            if tr.snoozed_until and t >= tr.snoozed_until:
                tr.snoozed_until = 0.0
                if tr.unannounced:
                    tr.unannounced = False
                    out += self._emit(tr, "raised", t, note="snooze ended, condition holds")
                else:
                    out += self._emit(tr, "updated", t, note="snooze ended, condition holds")
            if (pol.escalate_after_s is not None and not tr.acked and not tr.snoozed_until
                    and tr.severity in pol.escalate_severities
                    and tr.escalation < len(self.channels) - 1
                    and t - tr.escalated_t >= pol.escalate_after_s):
                tr.escalation += 1
                tr.escalated_t = t
                out += self._emit(tr, "updated", t,
                                  note=f"unacknowledged: escalated to {self.channels[tr.escalation]}")
        return out

    # -- technician actions ----------------------------------------------------
    def _track_of(self, alert_or_record_id: str) -> Track | None:
        alert_id = self.ids.get(alert_or_record_id, alert_or_record_id)
        for tr in self.tracks.values():
            if tr.alert_id == alert_id:
                return tr
        return None

    def acknowledge(self, alert_id: str) -> bool:
        tr = self._track_of(alert_id)
        if tr is None:
            return False
        tr.acked = True
        return True

    def snooze(self, alert_id: str, t: float, seconds: float | None = None) -> bool:
        """Silence an open alert until t + seconds; False when it is not open."""
        tr = self._track_of(alert_id)
        if tr is None:
            return False
        tr.snoozed_until = t + (seconds or self.policy_for(tr.rule).snooze_default_s)
        return True

    def feedback(self, alert_or_record_id: str, verdict: str) -> None:
        normal = _VERDICTS.get(verdict.lower())
        if normal is None:
            raise ValueError(f"verdict must be confirmed or rejected, not {verdict!r}")
        alert_id = self.ids.get(alert_or_record_id)
        if alert_id is None:
            raise KeyError(alert_or_record_id)
        rule = self.rule_of.get(alert_id, "")
        self.verdicts[alert_id] = (rule, normal)  # a changed verdict replaces the old one
        tr = self._track_of(alert_id)
        if tr is not None:
            tr.acked = True

    def precision(self) -> dict[str, float | None]:
        counts: dict[str, list[int]] = {r: [0, 0] for r in self.rules_seen}
        for rule, verdict in self.verdicts.values():
            c = counts.setdefault(rule, [0, 0])
            c[0 if verdict == CONFIRMED else 1] += 1
        return {r: (c[0] / (c[0] + c[1]) if c[0] + c[1] else None) for r, c in counts.items()}

    # -- internals ---------------------------------------------------------
    def _open(self, tr: Track, t: float, severity: str) -> list[Alert]:
        start = tr.pending_since if tr.pending_since is not None else t
        tr.open, tr.episode_start, tr.severity = True, start, severity
        tr.alert_id = (stable_id(tr.rule, tr.subject, f"{start:.3f}") if not tr.cause
                       else stable_id(tr.rule, tr.subject, tr.cause, f"{start:.3f}"))
        tr.escalation, tr.escalated_t, tr.acked, tr.seq = 0, t, False, 0
        self.rule_of[tr.alert_id] = tr.rule
        # Imported here: prometheus_client brings http.server and ssl, some 30 ms
        # of CPU that a replay raising no alert need not spend starting up.
        from agent.metrics import ALERTS_RAISED

        ALERTS_RAISED.labels(rule=tr.rule, severity=severity).inc()
        if tr.snoozed_until > t:
            tr.unannounced = True
            return []
        return self._emit(tr, "raised", t)

    def _close(self, tr: Track, t: float, summary: str) -> list[Alert]:
        out: list[Alert] = []
        if not tr.unannounced:
            tr.message = f"Cleared after {(t - tr.episode_start) / 60:.0f} min: {summary}"
            out = self._emit(tr, "cleared", t, force=True)
        del self.tracks[tr.key]
        return out

    def _emit(self, tr: Track, state: str, t: float, note: str = "",
              force: bool = False) -> list[Alert]:
        if tr.snoozed_until > t and not force:
            return []
        assert tr.alert_id is not None
        record_id = tr.alert_id if state == "raised" else stable_id(tr.alert_id, state,
                                                                     str(tr.seq))
        tr.seq += 1
        self.ids[record_id] = tr.alert_id
        self.ids[tr.alert_id] = tr.alert_id
        while len(self.ids) > MAX_ID_MAP:
            self.ids.popitem(last=False)
        details = dict(tr.details)
        details.update({
            "alert_id": tr.alert_id,
            "subject": tr.subject,
            "cause": tr.cause or None,
            "episode_start_s": round(tr.episode_start, 3),
            "escalation": tr.escalation,
            "channel": self.channels[min(tr.escalation, len(self.channels) - 1)],
            "acknowledged": tr.acked,
        })
        if note:
            details["note"] = note
        if tr.snoozed_until:
            details["snoozed_until_s"] = round(tr.snoozed_until, 3)
        return [Alert(record_id=record_id, rule=tr.rule, severity=tr.severity, state=state,
                      message=tr.message, stamp=self.stamp(t), sensor_id=tr.sensor_id,
                      animal_id=tr.animal_id, details=details)]

    @staticmethod
    def _details(f: Finding) -> dict[str, Any]:
        return {"signals": [s.to_dict() for s in f.signals], "summary": f.summary, **f.extra}

    # -- state ---------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "tracks": [asdict(tr) for tr in self.tracks.values()],
            "verdicts": {k: list(v) for k, v in self.verdicts.items()},
            "ids": list(self.ids.items()),
            "rules": dict(self.rule_of),
            "rules_seen": sorted(self.rules_seen),
        }

    def from_state(self, state: dict[str, Any]) -> None:
        self.tracks = {}
        for data in state.get("tracks", []):
            tr = Track(**data)
            self.tracks[tr.key] = tr
        self.verdicts = {k: (v[0], v[1]) for k, v in state.get("verdicts", {}).items()}
        self.ids = OrderedDict((k, v) for k, v in state.get("ids", []))
        self.rule_of = dict(state.get("rules", {}))
        self.rules_seen = set(state.get("rules_seen", []))
