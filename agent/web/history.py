"""24-hour history for the page's sparklines: per (sensor, field), the mean of
each 15-minute bucket, at most 96 points. Fed by the runtime with every bulk
tank and barn climate reading (a few hundred bytes per series, so memory is
bounded by the number of such sensors); thread-safe."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

BUCKET_S = 900.0
BUCKETS = 96  # 24 h
MAX_SERIES = 512
# firmware -> the fields drawn
TRACKED = {"bulk-tank": ("milk_temp_c",), "barn-climate": ("temperature_c", "humidity_pct")}


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # "sensor:field" -> {bucket index: [sum, count]}
        self._series: OrderedDict[str, OrderedDict[int, list[float]]] = OrderedDict()

    def note(self, sensor_id: str, firmware: str, values: dict[str, float],
             wall_ts: float) -> None:
        fields = TRACKED.get(firmware)
        if not fields:
            return
        bucket = int(wall_ts // BUCKET_S)
        with self._lock:
            for name in fields:
                value = values.get(name)
                if not isinstance(value, int | float):
                    continue
                key = f"{sensor_id}:{name}"
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = OrderedDict()
                    while len(self._series) > MAX_SERIES:
                        self._series.popitem(last=False)
                acc = series.get(bucket)
                if acc is None:
                    series[bucket] = [float(value), 1.0]
                    for old in [b for b in series if b <= bucket - BUCKETS]:
                        del series[old]
                else:
                    acc[0] += float(value)
                    acc[1] += 1.0

    def load(self, rows: Iterable[tuple[str, str, dict[str, float], float]]) -> None:
        """Backfill from stored readings (sensor_id, firmware, values, wall_ts), oldest first."""
        for sensor_id, firmware, values, wall_ts in rows:
            self.note(sensor_id, firmware, values, wall_ts)

    def snapshot(self, now_wall: float) -> dict[str, list[float]]:
        """Each series' bucket means of the last 24 h, oldest first."""
        first = int(now_wall // BUCKET_S) - BUCKETS + 1
        with self._lock:
            return {
                key: [s / n for b, (s, n) in sorted(series.items()) if b >= first]
                for key, series in self._series.items()
            }


class Trend:
    """How one number (the sync backlog) moved over the last minutes, from the
    values the page has seen (each poll notes one); monotonic clock."""

    def __init__(self, window_s: float = 600.0, max_points: int = 256) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, float]] = deque(maxlen=max_points)
        self._lock = threading.Lock()

    def note(self, mono: float, value: float) -> dict[str, float] | None:
        """Note ``value``; the change since the oldest point in the window
        (``delta`` and over how many ``minutes``), None before a minute of data."""
        with self._lock:
            while self._points and self._points[0][0] < mono - self.window_s:
                self._points.popleft()
            self._points.append((mono, float(value)))
            t0, v0 = self._points[0]
        if mono - t0 < 60.0:
            return None
        return {"delta": float(value) - v0, "minutes": round((mono - t0) / 60.0, 1)}


def bucket_means(points: Iterable[tuple[float, float]], now_wall: float) -> list[float]:
    """(wall_ts, value) points as the last 24 h of 15-minute means, oldest first."""
    first = int(now_wall // BUCKET_S) - BUCKETS + 1
    sums: dict[int, list[float]] = {}
    for ts, value in points:
        bucket = int(ts // BUCKET_S)
        if bucket >= first:
            acc = sums.setdefault(bucket, [0.0, 0.0])
            acc[0] += value
            acc[1] += 1.0
    return [s / n for _, (s, n) in sorted(sums.items())]
