"""The status page's body condition and milk check sections: shown only when there
are any, every value escaped (animal and camera ids may carry wire text), fed
the way the runtime feeds them (the store reader's dicts in the status snapshot)."""

from __future__ import annotations

import time
from pathlib import Path

from helpers_bcs_milk import body_condition, milk_check
from helpers_store import make_writer

from agent.store.reader import StoreReader
from agent.web.page import render_status
from agent.web.status import StatusSnapshot

WHEN = 1_750_000_000.0


def _status(**sections: object) -> dict[str, object]:
    data = StatusSnapshot(version="t", uptime_s=1.0).to_dict()
    data.update(sections)
    return data


def test_no_scores_no_checks_no_sections() -> None:
    html = render_status(_status(), [])
    assert "Body condition" not in html and "Milk checks" not in html
    assert StatusSnapshot(version="t", uptime_s=1.0).to_dict()["body_conditions"] == []
    assert StatusSnapshot(version="t", uptime_s=1.0).to_dict()["milk_checks"] == []


def test_scores_and_checks_from_the_store_are_shown_escaped(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    w.submit(body_condition(1, run="p", animal="NL-17", bcs=2.75, low=2.5, high=3.0,
                            wall_ts=WHEN))
    w.submit(body_condition(2, run="p", animal="<img src=x>", camera="<b>top</b>",
                            wall_ts=WHEN))
    w.submit(milk_check(1, run="p", animal="NL-17", result="blood", confidence=0.876,
                        quarter="RR", wall_ts=WHEN))
    w.submit(milk_check(2, run="p", animal=None, result="normal", quarter=None, wall_ts=WHEN))
    w.close()
    reader = StoreReader(db)
    snap = StatusSnapshot(version="t", uptime_s=1.0,
                          body_conditions=reader.recent_body_conditions(10),
                          milk_checks=reader.recent_milk_checks(10))
    html = render_status(snap.to_dict(), [])
    bcs = html[html.index("<h2>Body condition</h2>"):html.index("<h2>Milk checks</h2>")]
    milk = html[html.index("<h2>Milk checks</h2>"):html.index("<h2>Buffer and sync</h2>")]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(WHEN))
    assert "<td>NL-17</td><td>2.75 (2.50\u20133.00)</td>" in bcs
    assert f"<td>{when}</td><td>topview-1</td>" in bcs
    assert "&lt;img src=x&gt;" in bcs and "<img" not in html
    assert "&lt;b&gt;top&lt;/b&gt;" in bcs and "<b>top" not in html
    # Newest first, as the reader gives them.
    assert bcs.index("&lt;img") < bcs.index("NL-17")
    assert '<td>NL-17</td><td>RR</td><td class="bad">blood</td><td>0.88</td>' in milk
    assert f'<td>-</td><td>-</td><td class="ok">normal</td><td>0.96</td><td>{when}</td>' in milk


def test_an_age_from_the_runtime_is_shown_instead_of_the_time() -> None:
    html = render_status(
        _status(body_conditions=[{"animal_id": "cow-1", "bcs": 3.0, "low": 2.75,
                                  "high": 3.25, "camera_id": "top-1", "wall_ts": WHEN,
                                  "age_s": 600.0}],
                milk_checks=[{"animal_id": "cow-1", "result": "clots", "confidence": 0.5,
                              "quarter": "LF", "wall_ts": None}]),
        [],
    )
    assert "<td>10\u00a0min ago</td>" in html  # display.age_text: translated, kept together
    assert '<td class="bad">clots</td><td>0.50</td><td>-</td>' in html
