"""The ear-tag review queue on the page: doubtful visits with their crops, a
technician's tag number kept beside the visit and recorded as a user action;
viewers only look; ids and tag numbers from the wire escaped."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_web import csrf_of, logged_in, web_client

from agent.runtime.review import ReviewItems

JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


def _queue(folder: Path) -> ReviewItems:
    for seq, (visit, tag, status) in enumerate((("v1", "1134", "flagged"),
                                                ("v2", "<b>9433</b>", "review")), start=1):
        item = folder / f"{seq:010d}-{visit}"
        item.mkdir(parents=True)
        (item / "crop-0.jpg").write_bytes(JPEG)
        (item / "evidence.json").write_text(json.dumps({
            "visit_id": visit, "tag_number": tag, "status": status,
            "flags": ["not_in_register"], "confidence": 0.61, "camera_id": "lane1",
            "crops": ["crop-0.jpg", "../../etc/passwd"]}))
    return ReviewItems(folder)


async def test_review_a_tag_number(tmp_path: Path) -> None:
    queue = _queue(tmp_path / "review")
    client, _, actions = await web_client(tmp_path, review=queue)
    try:
        assert (await client.get("/review", allow_redirects=False)).status == 303
        await logged_in(client)
        assert 'href="/review"' in await (await client.get("/")).text()
        page = await (await client.get("/review")).text()
        assert page.index("0000000002-v2") < page.index("0000000001-v1"), "newest first"
        assert "&lt;b&gt;9433&lt;/b&gt;" in page and "<b>9433" not in page
        assert 'src="/review/0000000001-v1/crop-0.jpg"' in page and "passwd" not in page
        crop = await client.get("/review/0000000001-v1/crop-0.jpg")
        assert crop.status == 200 and crop.headers["Content-Type"] == "image/jpeg"
        assert await crop.read() == JPEG
        for bad in ("/review/0000000001-v1/evidence.json", "/review/..%2F..%2Fetc/crop-0.jpg",
                    "/review/0000000009-v9/crop-0.jpg"):
            assert (await client.get(bad)).status == 404, bad
        csrf = csrf_of(page)
        assert (await client.post("/review/0000000001-v1",
                                  data={"tag_number": "1134"})).status == 403  # no CSRF
        assert (await client.post("/review/0000000001-v1",
                                  data={"tag_number": "12 34", "csrf": csrf})).status == 400
        resp = await client.post("/review/0000000001-v1",
                                 data={"tag_number": "1135", "csrf": csrf},
                                 allow_redirects=False)
        assert resp.status == 303
        saved = json.loads((tmp_path / "review" / "0000000001-v1" / "verdict.json").read_text())
        assert saved == {"visit_id": "v1", "read": "1134", "tag_number": "1135",
                         "verdict": "corrected", "user": "tech"}
        assert "0000000001-v1" not in await (await client.get("/review")).text()
        [review] = [a for a in actions.items if a["action"] == "tag_review"]
        assert review["user"] == "tech" and review["verdict"] == "corrected"
        assert review["read"] == "1134" and review["tag_number"] == "1135"
    finally:
        await client.close()


async def test_a_viewer_only_looks(tmp_path: Path) -> None:
    queue = _queue(tmp_path / "review")
    client, _, actions = await web_client(tmp_path, review=queue)
    try:
        csrf = await logged_in(client, "view")
        page = await (await client.get("/review")).text()
        assert "1134" in page and 'name="tag_number"' not in page
        resp = await client.post("/review/0000000001-v1",
                                 data={"tag_number": "1134", "csrf": csrf})
        assert resp.status == 403
        assert not (tmp_path / "review" / "0000000001-v1" / "verdict.json").exists()
        assert not [a for a in actions.items if a["action"] == "tag_review"]
    finally:
        await client.close()
