"""The alert API: list, confirm/reject/snooze/acknowledge, bad input, and each
change kept as a user action (who, what, when)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from helpers_web import Actions, logged_in, web_client


class Backend:
    """Keeps verdicts like the rule engine does: per alert, precision per rule."""

    def __init__(self) -> None:
        self.alerts = {"a1": "heat_stress", "a2": "heat_stress", "b1": "mastitis"}
        self.verdicts: dict[str, str] = {}
        self.snoozed: dict[str, float] = {}
        self.acked: set[str] = set()

    def recent_alerts(self, n: int) -> list[dict[str, Any]]:
        return [{"record_id": k, "rule": r} for k, r in list(self.alerts.items())[:n]]

    def precision(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for rule in set(self.alerts.values()):
            got = [v for k, v in self.verdicts.items() if self.alerts[k] == rule]
            out[rule] = got.count("confirmed") / len(got) if got else None
        return out

    def feedback(self, alert_id: str, verdict: str) -> None:
        if verdict not in ("confirmed", "rejected"):
            raise ValueError("verdict must be confirmed or rejected")
        if alert_id not in self.alerts:
            raise KeyError(alert_id)
        self.verdicts[alert_id] = verdict

    def snooze(self, alert_id: str, seconds: float) -> bool:
        if alert_id not in self.alerts:
            return False
        self.snoozed[alert_id] = seconds
        return True

    def acknowledge(self, alert_id: str) -> bool:
        if alert_id not in self.alerts:
            return False
        self.acked.add(alert_id)
        return True


async def _client(tmp_path: Path, user: str = "tech"
                  ) -> tuple[TestClient, Backend, Actions, str]:
    backend = Backend()
    client, _, actions = await web_client(tmp_path, alerts=backend)
    csrf = await logged_in(client, user)
    return client, backend, actions, csrf


async def test_feedback_updates_precision_and_is_kept_as_a_user_action(tmp_path: Path) -> None:
    client, backend, actions, csrf = await _client(tmp_path)
    try:
        listed = await (await client.get("/api/alerts")).json()
        assert [a["record_id"] for a in listed["alerts"]] == ["a1", "a2", "b1"]
        assert listed["precision"]["heat_stress"] is None
        for alert_id, verdict in (("a1", "confirmed"), ("a2", "rejected")):
            resp = await client.post(f"/api/alerts/{alert_id}/feedback",
                                     json={"verdict": verdict}, headers={"X-CSRF-Token": csrf})
            assert resp.status == 200
        body = await resp.json()
        assert body["precision"]["heat_stress"] == 0.5
        assert backend.verdicts == {"a1": "confirmed", "a2": "rejected"}
        changes = [a for a in actions.items if a["action"].startswith("alert_")]
        assert changes == [
            {"user": "tech", "role": "technician", "action": "alert_confirm",
             "alert_id": "a1", "verdict": "confirmed"},
            {"user": "tech", "role": "technician", "action": "alert_reject",
             "alert_id": "a2", "verdict": "rejected"},
        ]
    finally:
        await client.close()


async def test_snooze_and_acknowledge(tmp_path: Path) -> None:
    client, backend, actions, csrf = await _client(tmp_path)
    try:
        hdr = {"X-CSRF-Token": csrf}
        resp = await client.post("/api/alerts/b1/action", json={"action": "snooze",
                                                                "minutes": 30}, headers=hdr)
        assert resp.status == 200, await resp.text()
        assert backend.snoozed == {"b1": 1800.0}
        resp = await client.post("/api/alerts/a1/action", json={"action": "acknowledge"},
                                 headers=hdr)
        assert resp.status == 200
        assert backend.acked == {"a1"}
        for bad in ({"action": "snooze", "minutes": 0}, {"action": "snooze", "minutes": "x"},
                    {"action": "delete"}, {}):
            assert (await client.post("/api/alerts/a1/action", json=bad,
                                      headers=hdr)).status == 400, bad
        assert (await client.post("/api/alerts/zz/action", json={"action": "snooze"},
                                  headers=hdr)).status == 404
        # The page's form without script: the same, then back to the page.
        resp = await client.post("/api/alerts/a2/action",
                                 data={"action": "confirm", "csrf": csrf},
                                 allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/#alert-a2"
        assert backend.verdicts == {"a2": "confirmed"}
        assert [a["action"] for a in actions.items if a["action"].startswith("alert_")] == [
            "alert_snooze", "alert_acknowledge", "alert_confirm"]
    finally:
        await client.close()


async def test_feedback_rejects_bad_input(tmp_path: Path) -> None:
    client, backend, actions, csrf = await _client(tmp_path)
    try:
        hdr = {"X-CSRF-Token": csrf}
        assert (await client.post("/api/alerts/zz/feedback", json={"verdict": "confirmed"},
                                  headers=hdr)).status == 404
        assert (await client.post("/api/alerts/a1/feedback", json={"verdict": "maybe"},
                                  headers=hdr)).status == 400
        assert (await client.post("/api/alerts/a1/feedback", json={},
                                  headers=hdr)).status == 400
        assert (await client.post("/api/alerts/a1/feedback", data={"verdict": "confirmed"},
                                  headers=hdr)).status == 415
        assert (await client.post("/api/alerts/%3Cscript%3E/feedback",
                                  json={"verdict": "confirmed"}, headers=hdr)).status == 400
        # A final newline is not part of an id (re.match with $ would let it through).
        assert (await client.post("/api/alerts/a1%0A/feedback",
                                  json={"verdict": "confirmed"}, headers=hdr)).status == 400
        assert backend.verdicts == {}
        assert not [a for a in actions.items if a["action"].startswith("alert_")]
    finally:
        await client.close()


class SlowBackend(Backend):
    """The rule engine's lock held by the ingest thread, SQLite busy: every call
    waits until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.go = threading.Event()

    def recent_alerts(self, n: int) -> list[dict[str, Any]]:
        self.go.wait(5)
        return super().recent_alerts(n)

    def snooze(self, alert_id: str, seconds: float) -> bool:
        self.go.wait(5)
        return super().snooze(alert_id, seconds)


async def test_a_slow_backend_does_not_stall_the_page(tmp_path: Path) -> None:
    """The list and the actions run in worker threads: while the backend waits,
    other requests are still answered."""
    import asyncio
    import time

    backend = SlowBackend()
    client, _, actions = await web_client(tmp_path, alerts=backend)
    try:
        csrf = await logged_in(client)
        for slow in (client.get("/api/alerts"),
                     client.post("/api/alerts/a1/action", json={"action": "snooze"},
                                 headers={"X-CSRF-Token": csrf})):
            backend.go.clear()
            pending = asyncio.ensure_future(slow)
            await asyncio.sleep(0.1)
            started = time.monotonic()
            assert (await client.get("/robots.txt")).status == 200
            assert time.monotonic() - started < 1.0, "the event loop was blocked"
            assert not pending.done()
            backend.go.set()
            assert (await pending).status == 200
        assert backend.snoozed == {"a1": 3600.0}
        assert actions.items[-1]["action"] == "alert_snooze"
    finally:
        backend.go.set()
        await client.close()
