"""scripts/alt_barn: the independent labelled barn generator writes replay input that
`dairy-edge replay` takes without a bad line, and its scorer counts as documented."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agent.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    path = ROOT / "scripts" / "alt_barn" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"alt_barn_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_tiny_farm_parses_and_replays_without_bad_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = load("generate")
    params = gen.generate(7, 10, 2, tmp_path)
    assert params["n"] == 10 and params["days"] == 2
    lines = (tmp_path / "messages.jsonl").read_text().splitlines()
    assert len(lines) == params["messages"] > 1000
    stamps = []
    topics = set()
    for line in lines:
        d = json.loads(line)
        assert set(d) in ({"ts", "topic", "payload"}, {"ts", "topic", "payload_b64"})
        stamps.append(d["ts"])
        topics.add(d["topic"].split("/")[1])
        if "payload_b64" in d:
            frame = base64.b64decode(d["payload_b64"])
            assert len(frame) == 22 and frame[:2] == b"CL"
            assert int.from_bytes(frame[20:22], "little") == gen.crc16_ccitt_false(frame[:20])
    assert stamps == sorted(stamps)
    assert {"climate", "tank", "collar", "milk", "water"} <= topics
    for line in (tmp_path / "labels.jsonl").read_text().splitlines():
        lab = json.loads(line)
        assert {"rule", "subject", "onset", "end", "detectable"} <= set(lab)
        assert lab["onset"] <= lab["end"]
    events = [json.loads(x) for x in (tmp_path / "farm.json").read_text().splitlines()]
    assert all({"ts", "type"} <= set(e) for e in events)
    capsys.readouterr()
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(tmp_path / "messages.jsonl"), "--farm", str(tmp_path / "farm.json"),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped:" not in err
    assert " 0 bad lines" in err
    assert f"replayed {len(lines)} messages" in err
    for line in out.read_text().splitlines():
        assert {"ts", "rule", "subject"} <= set(json.loads(line))


def test_crc_matches_the_published_check_value() -> None:
    # CRC-16/CCITT-FALSE of "123456789" is 0x29B1
    assert load("generate").crc16_ccitt_false(b"123456789") == 0x29B1


def test_scorer_counts_a_hand_made_pair() -> None:
    score = load("score")
    day = "2025-06-01T"
    labels = [
        {"rule": "estrus", "subject": "1", "onset": day + "10:00:00Z", "end": day + "20:00:00Z",
         "detectable": day + "12:00:00Z"},
        {"rule": "estrus", "subject": "2", "onset": day + "10:00:00Z", "end": day + "20:00:00Z",
         "detectable": day + "12:00:00Z"},
        {"rule": "sensor.spike", "subject": "col-a", "alt_subjects": ["9"],
         "onset": day + "12:00:00Z", "end": day + "12:02:00Z", "detectable": day + "12:00:00Z"},
        {"rule": "mastitis", "subject": "5", "onset": day + "06:00:00Z", "end": day + "18:00:00Z",
         "detectable": day + "18:00:00Z"},
        {"rule": "rumination", "subject": "3", "onset": day + "00:00:00Z", "end": day + "23:00:00Z",
         "detectable": day + "00:00:00Z", "optional": True},
    ]
    alerts = [
        {"ts": day + "09:59:30Z", "rule": "estrus", "subject": "1"},       # true: within 60 s
        {"ts": day + "09:58:00Z", "rule": "estrus", "subject": "2"},       # before onset
        {"ts": "2025-06-02T03:00:00Z", "rule": "estrus", "subject": "1"},  # past end + 6 h grace
        {"ts": day + "12:00:00Z", "rule": "estrus", "subject": "3"},       # no episode
        {"ts": day + "12:01:00Z", "rule": "sensor.spike", "subject": "9"},  # alt subject
        {"ts": day + "18:30:00Z", "rule": "mastitis", "subject": "5/LF"},  # cow/quarter
        {"ts": day + "09:00:00Z", "rule": "rumination", "subject": "3"},   # optional: left out
    ]
    res = score.score(labels, alerts)
    _, summary = score.table(res)
    e = summary["estrus"]
    assert (e["alerts"], e["true"], e["false"], e["episodes"], e["found"]) == (4, 1, 3, 2, 1)
    assert e["precision"] == pytest.approx(1 / 4) and e["recall"] == 0.5
    assert e["median_delay_h"] == 0.0
    assert summary["sensor.spike"]["precision"] == 1.0 and summary["sensor.spike"]["recall"] == 1.0
    assert summary["mastitis"]["median_after_detectable_h"] == pytest.approx(0.5)
    assert summary["rumination"]["precision"] is None and summary["rumination"]["episodes"] == 0
    overall = summary["OVERALL"]
    assert overall["precision"] == pytest.approx(3 / 6) and overall["recall"] == pytest.approx(3 / 4)
    assert sorted(fp["subject"] for fp in res["fp"]) == ["1", "2", "3"]
    assert [m["subject"] for m in res["missed"]] == ["2"]
