"""The readings' staging COPY text (store_postgres._stage_lines) against PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
from helpers_central import reading, unique_device

from agent.central.store import BatchMeta
from agent.central.store_postgres import PostgresStore
from agent.central.validate import ValidRecord, validate_record
from agent.records.protocol import RecordStatus

pytest_plugins = ("helpers_central_fixtures",)

ODD = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "\\.", "end\\",
       "\\t literally", "\x01\x08\x0b\x0c\x7f", "v\u00e9rifi\u00e9 \U0001f404 \u00b0C"]


def meta(device: str, seq: int) -> BatchMeta:
    return BatchMeta(device, "e1", seq, f"{device}:e1:{seq}", "k1", 1, 1_750_000_000.0, True, 100)


async def test_text_numbers_nulls_and_json_come_back_as_sent(pg_url: str) -> None:
    """Every value a reading can hold, including COPY's own special characters and
    strings that look like its escapes, is stored exactly (floats to the bit)."""
    records: list[dict[str, Any]] = []
    for n, text in enumerate(ODD):
        records.append(reading(
            n, sensor=f"s{n}{text}", animal=text, topic=text, firmware=f"fw{text}",
            boot_id=text, msg_id=text, source_ts=0.1 + n / 3,
            wall_ts=1_750_000_000.0 + n / 7, mono_ns=-(2**63) + n if n % 2 else 2**63 - 1 - n,
            clock_synced=bool(n % 2), units={"t": text}, attributes={text: [text, None, 1.5]},
            values={"x": 1e-300 * (n + 1), "y": -0.0}, raw={"x": 12345.678 / (n + 1)},
        ))
    records.append(reading(99, animal=None))  # NULLs: animal_id, source_ts, msg_id
    checked = [validate_record(i, r) for i, r in enumerate(records)]
    assert all(isinstance(c, ValidRecord) for c in checked), checked
    store = PostgresStore(pg_url)
    await store.start()
    device = unique_device()
    try:
        result = await store.ingest(meta(device, 1), checked)  # type: ignore[arg-type]
        assert [s for s, _ in result.statuses] == [RecordStatus.ACCEPTED] * len(records)
        columns = ("record_id", "sensor_id", "firmware", "topic", "animal_id", "wall_ts",
                   "mono_ns", "boot_id", "clock_synced", "source_ts", "msg_id", "values",
                   "raw", "units", "attributes")
        with psycopg.connect(pg_url) as pg:
            rows = pg.execute(
                f"SELECT {', '.join(f'{c!r}'.replace(chr(39), chr(34)) for c in columns)}"
                " FROM readings WHERE device_id = %s ORDER BY id", (device,)).fetchall()
        assert len(rows) == len(records)
        for row, sent in zip(rows, records, strict=True):
            got = dict(zip(columns, row, strict=True))
            for c in columns:
                expected = sent.get(c, {} if c == "attributes" else None)
                assert got[c] == expected, (c, got[c], expected)
            assert repr(got["wall_ts"]) == repr(sent["wall_ts"])
    finally:
        await store.close()
