"""`dairy-edge replay`: recorded traffic through the real ingest and rules, the
clock following the data; one output line per raised alert; bad lines skipped
with their line number."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.ingest.decode import encode_binary
from agent.ingest.firmware import load_firmware
from agent.runtime.replay import BadLine, decode_line, iso, parse_ts

ROOT = Path(__file__).resolve().parents[1]
T0 = parse_ts("2025-07-01T10:00:00Z")


def climate(ts: float, seq: int, temp: float, rh: float, node: str = "c1",
            sent: float | None = None) -> str:
    payload = json.dumps({"boot": 1, "seq": seq, "ts": int(ts), "t": temp, "rh": rh})
    return json.dumps({"ts": iso(sent if sent is not None else ts + 0.4),
                       "topic": f"barn/climate/{node}", "payload": payload})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run(tmp_path: Path, lines: list[str], *extra: str) -> list[dict[str, object]]:
    src = write(tmp_path / "messages.jsonl", lines)
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(src), "-o", str(out), *extra]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_help_names_the_input_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replay", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "MESSAGES.jsonl" in text and "ALERTS.jsonl" in text and "--farm" in text


def test_hot_afternoon_raises_one_heat_alert_at_data_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [climate(T0 + 60 * i, i, 20.0, 60.0) for i in range(60)]  # cool hour
    lines += [climate(T0 + 60 * i, i, 31.0, 60.0) for i in range(60, 240)]  # 3 h hot
    lines.insert(5, "this is not json")
    lines.insert(9, json.dumps({"ts": "yesterday", "topic": "barn/climate/c1",
                                "payload": "{}"}))
    alerts = run(tmp_path, lines)
    heat = [a for a in alerts if a["rule"] == "heat_stress"]
    assert len(heat) == 1, alerts
    a = heat[0]
    assert set(a) == {"ts", "rule", "subject", "severity", "alert_id", "detail"}
    assert a["subject"] == "c1"
    # Raised two hours into the hot spell, on the data's clock, not the replay's.
    raised = parse_ts(a["ts"])
    assert T0 + 3600 + 7200 <= raised <= T0 + 3600 + 7200 + 120
    err = capsys.readouterr().err
    assert ":6: skipped: not JSON" in err
    assert ":10: skipped: ts 'yesterday'" in err
    assert "2 bad lines" in err


def test_binary_frames_and_unknown_topics(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_firmware(ROOT / "firmware_configs" / "neck_collar.yaml")
    assert spec.binary is not None
    frame = encode_binary(spec.binary, {"magic": b"CL", "version": 1, "flags": 0, "boot": 1,
                                        "seq": 7, "cow": 1042, "activity": 120,
                                        "rumination": 9, "battery": 3600})
    lines = [
        json.dumps({"ts": iso(T0), "topic": "barn/collar/k1",
                    "payload_b64": base64.b64encode(frame).decode()}),
        json.dumps({"ts": iso(T0 + 1), "topic": "barn/nothing/x", "payload": "{}"}),
        json.dumps({"ts": iso(T0 + 2), "topic": "barn/collar/k1", "payload_b64": "%%%"}),
    ]
    assert run(tmp_path, lines) == []
    err = capsys.readouterr().err
    assert "replayed 2 messages (1 readings, 1 quarantined: unknown_topic 1, 1 bad lines)" in err
    assert ":3: skipped: payload_b64 is not valid base64" in err


def test_silence_in_the_data_is_a_dropout_on_the_data_clock(tmp_path: Path) -> None:
    lines = [climate(T0 + 60 * i, i, 15.0, 60.0) for i in range(30)]
    # Two hours of nothing, then the node is back.
    lines += [climate(T0 + 60 * i, i, 15.0, 60.0) for i in range(150, 160)]
    alerts = run(tmp_path, lines)
    drop = [a for a in alerts if a["rule"] == "sensor.dropout"]
    assert len(drop) == 1 and drop[0]["subject"] == "c1"
    last = T0 + 29 * 60 + 0.4
    # A climate node's rhythm is not learnt after 30 readings: its role's 30 min count.
    assert last + 1800 < parse_ts(drop[0]["ts"]) <= last + 1800 + 61


def test_decode_line_forms() -> None:
    ts, topic, payload = decode_line(b'{"ts": 1717236000, "topic": "a/b", "payload": "x"}')
    assert (ts, topic, payload) == (1717236000.0, "a/b", b"x")
    ts, _, payload = decode_line('{"ts": "2024-06-01T10:00:00+02:00", "topic": "a/b", '
                                 '"payload_b64": "AAE="}')
    assert ts == parse_ts("2024-06-01T08:00:00Z") and payload == b"\x00\x01"
    for bad in ('[1]', '{"ts": 1, "payload": "x"}', '{"ts": 1, "topic": "a"}',
                '{"ts": true, "topic": "a", "payload": "x"}'):
        with pytest.raises(BadLine):
            decode_line(bad)
