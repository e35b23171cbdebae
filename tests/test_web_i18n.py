"""English and Bangla: complete gettext catalogues, compiled catalogues that
match their sources, the language chosen per user (cookie) or by the browser,
numbers, digits and times per locale."""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from helpers_web import farm_status, logged_in, web_client

from agent.web import i18n
from agent.web.display import age_text, value_text
from agent.web.view import render_view

WEB = Path(__file__).resolve().parents[1] / "agent" / "web"
LOCALES = sorted(p.name for p in (WEB / "locale").iterdir() if p.is_dir())


def _messages() -> set[str]:
    """Every message the page can show: Babel's extraction, plus any ``_("...")``
    a regex finds (inside f-strings, which the extractor cannot see)."""
    found = {str(m[2]) for m in extract_from_dir(str(WEB), method_map=[("**.py", "python")])
             if isinstance(m[2], str)}
    for path in WEB.glob("*.py"):
        found |= set(re.findall(r'(?<![\w.])_\("([^"]+)"\)', path.read_text()))
    found.discard("...")  # the module docstring's example
    return found


def test_bangla_is_there() -> None:
    assert "bn" in LOCALES and i18n.LANGUAGES["bn"] == "বাংলা"


@pytest.mark.parametrize("code", LOCALES)
def test_catalogue_is_complete_and_compiled(code: str) -> None:
    po_path = WEB / "locale" / code / "LC_MESSAGES" / "messages.po"
    catalog = read_po(po_path.open("rb"))
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(_messages() - set(translated))
    assert not missing, f"{code}: untranslated (run pybabel extract/update): {missing}"
    for msgid, text in translated.items():  # placeholders survive translation
        assert set(re.findall(r"\{\w+\}", str(msgid))) == set(re.findall(r"\{\w+\}", str(text))), \
            msgid
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    fresh = gettext.GNUTranslations(buf)
    shipped = i18n.translations(code)
    stale = [m for m in translated if fresh.gettext(str(m)) != shipped.gettext(str(m))]
    assert not stale, f"{code}: messages.mo is older than messages.po: pybabel compile"


def test_numbers_digits_and_words_per_locale() -> None:
    i18n.use("bn")
    try:
        assert value_text("milk_temp_c", 3.55) == "৩.৬\u00a0°C"
        assert value_text("total_l", 1234567.0) == "১২,৩৪,৫৬৭\u00a0l"  # Indian grouping
        assert value_text("agitator", 1.0) == "চালু"
        assert age_text(40) == "৪০\u00a0সেকেন্ড আগে"
        html = render_view(farm_status(cows=5, devices=8, alerts=1), [], can_change=True)
        assert "দুধের ট্যাংক" in html and "নিশ্চিত" in html and "Bulk tanks" not in html
    finally:
        i18n.use("en")
    assert value_text("total_l", 1234567.0) == "1,234,567\u00a0l"
    assert i18n.pick(None, "bn-BD,bn;q=0.9,en;q=0.8") == "bn"
    assert i18n.pick("en", "bn") == "en" and i18n.pick("xx", "fr") == "en"


async def test_switch_language_per_user(tmp_path: Path) -> None:
    client, _, _ = await web_client(tmp_path, provider=lambda: farm_status(5, 8, 1))
    try:
        await logged_in(client)
        page = await (await client.get("/")).text()
        assert '<html lang="en">' in page and "Alerts" in page
        resp = await client.get("/lang/bn", allow_redirects=False)
        assert resp.status == 303 and "de_lang=bn" in resp.headers["Set-Cookie"]
        page = await (await client.get("/")).text()
        assert '<html lang="bn">' in page and "সতর্কতা" in page and "Alerts" not in page
        assert "গেটওয়েতে পৌঁছানো যাচ্ছে না" in page  # the script's words come along
        view = await (await client.get("/api/view")).text()
        assert "দুধের ট্যাংক" in view
        assert (await client.get("/lang/xx", allow_redirects=False)).status == 404
    finally:
        await client.close()
    # Before logging in the browser's language decides.
    client, _, _ = await web_client(tmp_path)
    try:
        login = await (await client.get("/login", headers={"Accept-Language": "bn-BD"})).text()
        assert "পাসওয়ার্ড" in login and '<html lang="bn">' in login
    finally:
        await client.close()


def test_camera_sections_in_bangla() -> None:
    """The vision tables' headers and ages follow the language like the rest."""
    from agent.web.page import vision_sections

    status = {
        "cameras": [{"id": "cam-1", "role": "ear_tag", "state": "online", "fps": 2.0}],
        "models": {"tag": {"version": "1", "state": "active"}},
        "identifications": [{"tag_number": "1234", "animal_id": "NL-1", "status": "identified",
                             "confidence": 0.9, "camera_id": "cam-1"}],
        "body_conditions": [{"animal_id": "NL-1", "bcs": 3.0, "camera_id": "top-1",
                             "age_s": 600.0}],
        "milk_checks": [{"animal_id": "NL-1", "quarter": "LF", "result": "normal",
                         "confidence": 0.8, "age_s": 40.0}],
    }
    i18n.use("bn")
    try:
        html = vision_sections(status)
    finally:
        i18n.use("en")
    headers = re.findall(r"<th>([^<]*)</th>", html)
    english = {"Tag", "Animal", "Status", "Conf.", "Camera", "Role", "State", "Error", "Model",
               "Version", "Cow", "When", "Quarter", "Result"}
    assert headers and not english & set(headers), headers
    assert "ট্যাগ" in headers and "কখন" in headers
    assert "১০\u00a0মিনিট আগে" in html and " ago" not in html
    i18n.use("bn")
    try:
        empty = vision_sections({"cameras": status["cameras"]})
    finally:
        i18n.use("en")
    assert "এখনও কোনো গাভী শনাক্ত হয়নি" in empty
