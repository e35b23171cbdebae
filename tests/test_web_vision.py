"""The status page's vision sections: cameras, models and identifications,
escaped like every other value (tag numbers and errors may carry wire text)."""

from __future__ import annotations

from agent.web.page import render_status
from agent.web.status import StatusSnapshot


def _status(**vision: object) -> dict[str, object]:
    snap = StatusSnapshot(version="t", uptime_s=1.0)
    data = snap.to_dict()
    data.update(vision)
    return data


def test_no_cameras_no_vision_sections() -> None:
    html = render_status(_status(), [])
    assert "Cameras" not in html and "Cows identified" not in html


def test_cameras_models_and_identifications_are_shown_escaped() -> None:
    html = render_status(
        _status(
            cameras=[
                {"id": "lane1", "role": "eartag", "state": "online", "fps": 4.96,
                 "last_error": None},
                {"id": "lane2", "role": "eartag", "state": "stalled", "fps": 0.0,
                 "last_error": "<b>no frame for 12 s</b>"},
            ],
            models={"eartag_rec": {"state": "refused", "version": "1.0.0",
                                   "error": "sha256 mismatch"}},
            identifications=[
                {"tag_number": "2386", "animal_id": "NL-17", "status": "identified",
                 "confidence": 0.974, "camera_id": "lane1", "flags": []},
                {"tag_number": "<script>9</script>", "animal_id": None, "status": "flagged",
                 "confidence": 0.93, "camera_id": "lane1", "flags": ["not_in_register"]},
            ],
        ),
        [],
    )
    assert "lane1" in html and "stalled" in html and "5.0" in html
    assert "&lt;b&gt;no frame for 12 s&lt;/b&gt;" in html and "<b>no frame" not in html
    assert "sha256 mismatch" in html and "refused" in html
    assert "2386" in html and "NL-17" in html and "0.97" in html
    assert "&lt;script&gt;9&lt;/script&gt;" in html and "<script>" not in html
    assert "not_in_register" in html
