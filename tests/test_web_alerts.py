"""The alert feedback API: list, confirm/reject, token, bad input."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from agent.web.app import make_web_app


class Backend:
    """Keeps verdicts like the rule engine does: per alert, precision per rule."""

    def __init__(self) -> None:
        self.alerts = {"a1": "heat_stress", "a2": "heat_stress", "b1": "mastitis"}
        self.verdicts: dict[str, str] = {}

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


async def _client(token: str | None = None) -> tuple[TestClient, Backend]:
    backend = Backend()
    app = make_web_app(lambda: {"version": "t", "uptime_s": 0}, alerts=backend, token=token)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, backend


async def test_feedback_updates_precision() -> None:
    client, backend = await _client()
    try:
        listed = await (await client.get("/api/alerts")).json()
        assert [a["record_id"] for a in listed["alerts"]] == ["a1", "a2", "b1"]
        assert listed["precision"]["heat_stress"] is None
        for alert_id, verdict in (("a1", "confirmed"), ("a2", "rejected")):
            resp = await client.post(f"/api/alerts/{alert_id}/feedback",
                                     json={"verdict": verdict})
            assert resp.status == 200
        body = await resp.json()
        assert body["precision"]["heat_stress"] == 0.5
        assert backend.verdicts == {"a1": "confirmed", "a2": "rejected"}
    finally:
        await client.close()


async def test_feedback_rejects_bad_input() -> None:
    client, backend = await _client()
    try:
        assert (await client.post("/api/alerts/zz/feedback",
                                  json={"verdict": "confirmed"})).status == 404
        assert (await client.post("/api/alerts/a1/feedback",
                                  json={"verdict": "maybe"})).status == 400
        assert (await client.post("/api/alerts/a1/feedback", json={})).status == 400
        # A cross-site form post is not JSON.
        assert (await client.post("/api/alerts/a1/feedback",
                                  data={"verdict": "confirmed"})).status == 415
        assert (await client.post("/api/alerts/%3Cscript%3E/feedback",
                                  json={"verdict": "confirmed"})).status == 400
        assert backend.verdicts == {}
    finally:
        await client.close()


async def test_feedback_needs_the_token_when_one_is_set() -> None:
    client, backend = await _client(token="s3cret")
    try:
        no = await client.post("/api/alerts/a1/feedback", json={"verdict": "confirmed"})
        assert no.status == 401
        yes = await client.post("/api/alerts/a1/feedback", json={"verdict": "confirmed"},
                                headers={"Authorization": "Bearer s3cret"})
        assert yes.status == 200
        assert backend.verdicts == {"a1": "confirmed"}
    finally:
        await client.close()
