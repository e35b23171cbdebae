"""Time on the sensor's clock: a day of traffic delivered as a burst after an
outage raises the same rule alerts, at the same sensor times, as the same day
delivered live (replayed through ``dairy-edge replay``'s code path)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config.loader import load_config
from agent.runtime.replay import Replayer, iso, parse_ts, replay_lines

T0 = parse_ts("2025-07-01T00:00:00Z")
OUTAGE = (T0 + 9 * 3600, T0 + 20 * 3600)  # the gateway hears nothing 09:00-20:00


def _day() -> list[tuple[float, str, str]]:
    """(sensor time, topic, payload): a hot afternoon at one climate node, and a
    tank (temperature only) whose cooler fails at the 17:00 milking."""
    out = []
    for i in range(24 * 60):
        s = T0 + 60 * i
        h = i / 60
        temp = 31.0 if 12 <= h < 17 else 18.0
        out.append((s, "barn/climate/c1", json.dumps(
            {"boot": 1, "seq": i, "ts": int(s), "t": temp, "rh": 60.0})))
    temp = 3.6
    for i in range(24 * 120):
        s = T0 + 30 * i
        h = i / 120
        if 17 <= h < 18.5:
            temp += 0.08  # warm milk, nothing cooling it
        elif temp > 3.6:
            temp = max(3.6, temp - 0.01)
        else:
            temp = 3.6 + 0.3 * ((i // 20) % 2)  # thermostat band
        out.append((s, "barn/tank/t1", json.dumps(
            {"msg_id": f"a81f-{i:06d}", "ts": int(s), "temp": round(temp, 2)})))
    return sorted(out)


def _replay(lines: list[str]) -> list[dict[str, object]]:
    replayer = Replayer(load_config(None))
    return list(replay_lines(replayer, lines))


def _lines(burst: bool) -> list[str]:
    lines = []
    backlog = []
    for s, topic, payload in _day():
        arrival = s + 0.4
        if burst and OUTAGE[0] <= s < OUTAGE[1]:
            backlog.append((topic, payload))
            continue
        if burst and backlog and s >= OUTAGE[1]:
            # Eleven hours of readings delivered within a minute.
            for n, (b_topic, b_payload) in enumerate(backlog):
                lines.append(json.dumps({"ts": iso(OUTAGE[1] + 60 * n / len(backlog)),
                                         "topic": b_topic, "payload": b_payload}))
            backlog = []
        lines.append(json.dumps({"ts": iso(arrival), "topic": topic, "payload": payload}))
    return lines


def _rules(alerts: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return sorted((a["rule"], a["subject"], a["ts"]) for a in alerts
                  if not str(a["rule"]).startswith("sensor."))


def test_a_burst_after_an_outage_raises_what_live_traffic_raises(tmp_path: Path) -> None:
    live = _replay(_lines(burst=False))
    burst = _replay(_lines(burst=True))
    got = _rules(live)
    assert {r for r, _, _ in got} == {"heat_stress", "cooling"}, live
    assert _rules(burst) == got
    # During the outage the gateway heard nobody: that is no sensor's dropout (the
    # backlog shows every sensor kept measuring), so no sensor alert either way.
    assert not any(a["rule"] == "sensor.dropout" for a in burst)
    assert not any(a["rule"] == "sensor.dropout" for a in live)
