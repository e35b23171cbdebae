"""`dairy-edge demo` as a user runs it: a process, stopped with Ctrl-C (SIGINT).

It stops within 2 s in every mode (embedded broker, the broker already on a
port, without cameras), removes its temporary folder, refuses a busy port it
was told to use, and its sample calibration is not overdue.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_mqtt import free_port

from agent.ingest.calibration import load_calibration_dir
from agent.runtime.sample_data import CALIBRATION, copy_calibration, shift_dates

STOP_BUDGET_S = 2.0


# The package of this checkout, whatever the working folder.
ENV = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def _demo(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "demo", *args],
        cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for_progress(proc: subprocess.Popen[str], timeout: float = 60) -> list[str]:
    """Lines up to the first progress line (central has received readings)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"central has\s+(\d+)", line)
        if match and int(match.group(1)) > 0:
            return lines
        assert time.monotonic() < deadline, "".join(lines[-30:])
    raise AssertionError("demo ended early:\n" + "".join(lines[-30:]))


def _stop(proc: subprocess.Popen[str]) -> tuple[float, str]:
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        rest, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return time.monotonic() - started, rest


@pytest.mark.parametrize(
    "mode",
    ["embedded broker", "existing broker", "embedded broker, no camera"],
)
def test_demo_stops_within_2_s_of_ctrl_c_and_removes_its_folder(
    mode: str, tmp_path: Path
) -> None:
    args = ["--web-port", "0", "--rate", "50"]
    if mode.startswith("embedded"):
        args += ["--mqtt-port", str(free_port())]  # nothing listens there: embedded
    else:
        args += ["--mqtt-port", "1883"]  # the real Mosquitto
    if "no camera" in mode:
        args.append("--no-camera")
    proc = _demo(*args, cwd=tmp_path)
    try:
        lines = _wait_for_progress(proc)
    except BaseException:
        proc.kill()
        raise
    text = "".join(lines)
    assert ("(embedded)" in text) == mode.startswith("embedded"), text
    folder = Path(re.search(r"SQLite at (\S+)/central\.db", text).group(1))  # type: ignore[union-attr]
    assert folder.is_dir()
    took, rest = _stop(proc)
    assert proc.returncode == 0, rest
    assert took < STOP_BUDGET_S, f"{mode}: stopped {took:.2f} s after SIGINT\n{rest}"
    assert not folder.exists(), f"the demo left {folder} behind"


def test_demo_keeps_a_data_dir_it_was_given(tmp_path: Path) -> None:
    data = tmp_path / "kept"
    proc = _demo("--web-port", "0", "--mqtt-port", "1883", "--no-camera", "--data-dir",
                 str(data), cwd=tmp_path)
    try:
        _wait_for_progress(proc)
    except BaseException:
        proc.kill()
        raise
    _, rest = _stop(proc)
    assert proc.returncode == 0, rest
    assert (data / "central.db").is_file() and (data / "buffer.db").is_file()


def test_a_busy_web_port_it_was_told_to_use_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli.main", "demo", "--web-port", str(port),
             "--mqtt-port", "1883"],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=ENV,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"--web-port {port}" in result.stderr and "Choose another port" in result.stderr


def test_a_busy_mqtt_port_it_was_told_to_use_is_an_error(tmp_path: Path) -> None:
    # Bound but not listening: no broker answers there, and the embedded one
    # cannot have the port. It must not move to another port silently.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli.main", "demo", "--web-port", "0",
             "--mqtt-port", str(port)],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env=ENV,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port}" in result.stderr and "choose another port" in result.stderr
    assert "dairy-edge demo running" not in result.stdout


def test_the_sample_calibration_is_copied_with_dates_relative_to_today(tmp_path: Path) -> None:
    today = dt.date.today()
    copy_calibration(tmp_path, today)
    shipped = load_calibration_dir(CALIBRATION).entries()
    copied = {c.sensor_id: c for c in load_calibration_dir(tmp_path).entries()}
    assert copied and len(copied) == len(shipped)
    now = time.time()
    assert load_calibration_dir(tmp_path).overdue(now) == []
    latest = max(c.calibrated_on_ts for c in copied.values())
    assert dt.datetime.fromtimestamp(latest, dt.UTC).date() == today
    for entry in shipped:  # the intervals stay as shipped
        mine = copied[entry.sensor_id]
        assert mine.due_ts - mine.calibrated_on_ts == entry.due_ts - entry.calibrated_on_ts
    # comments survive the copy
    assert (tmp_path / "barn.yaml").read_text().splitlines()[0].startswith("#")


def test_shift_dates_moves_every_date_by_the_same_days() -> None:
    text = ("devices:\n  - calibrated_on: 2021-03-01  # two-point\n    due: 2021-04-01\n"
            "  - calibrated_on: 2021-03-11\n    due: 2021-03-31\n")
    out = shift_dates(text, dt.date(2021, 3, 21))  # ten days on
    assert out == ("devices:\n  - calibrated_on: 2021-03-11  # two-point\n    due: 2021-04-11\n"
                   "  - calibrated_on: 2021-03-21\n    due: 2021-04-10\n")
    assert shift_dates("devices: []\n", dt.date(2030, 1, 1)) == "devices: []\n"
