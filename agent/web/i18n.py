"""The page's languages: gettext catalogues (Babel) and per-locale numbers and times.

Messages are marked ``_("...")`` in agent/web/*.py and extracted with Babel:

    .venv/bin/pybabel extract -F agent/web/babel.cfg -o agent/web/locale/messages.pot agent/web
    .venv/bin/pybabel update -i agent/web/locale/messages.pot -d agent/web/locale -D messages
    .venv/bin/pybabel compile -d agent/web/locale -D messages

A language is a folder ``agent/web/locale/<code>/LC_MESSAGES`` with its
``messages.po`` and compiled ``messages.mo`` (shipped as package data), plus
its name in ``LANGUAGES``. English is the source language. Numbers use the
locale's grouping (Babel, CLDR) and its default digits (Bengali digits for
``bn``); times are the gateway's local time.

The current language is a context variable set for each request before the
page is rendered, so the renderers call ``_()`` without passing it around.
"""

from __future__ import annotations

import datetime
import gettext
import io
import time
from contextvars import ContextVar
from functools import cache
from importlib import resources
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal

DEFAULT = "en"


def _catalogues() -> dict[str, str]:
    """English, then every language with a compiled catalogue, by its own name."""
    found = {DEFAULT: "English"}
    folder = resources.files("agent.web") / "locale"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if (entry / "LC_MESSAGES" / "messages.mo").is_file():
            found[entry.name] = Locale.parse(entry.name).get_display_name() or entry.name
    return found


LANGUAGES = _catalogues()
LANG_COOKIE = "de_lang"
_current: ContextVar[str] = ContextVar("dairy_edge_web_lang", default=DEFAULT)
_DIGITS = {"beng": str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")}


@cache
def translations(code: str) -> gettext.NullTranslations:
    if code == DEFAULT:
        return gettext.NullTranslations()
    mo = resources.files("agent.web") / "locale" / code / "LC_MESSAGES" / "messages.mo"
    return gettext.GNUTranslations(io.BytesIO(mo.read_bytes()))


@cache
def _locale(code: str) -> tuple[Locale, str, dict[int, int]]:
    loc = Locale.parse(code)
    pattern = loc.decimal_formats[None].pattern.split(".")[0].split(";")[0]
    return loc, pattern, _DIGITS.get(str(loc.default_numbering_system), {})


def use(code: str) -> None:
    """Render in ``code`` from here on (this request's context)."""
    _current.set(code if code in LANGUAGES else DEFAULT)


def current() -> str:
    return _current.get()


def _(message: str) -> str:
    return translations(_current.get()).gettext(message)


def n_(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a message for extraction; translated where it is shown."""
    return message


def digits(text: str) -> str:
    """Latin digits as the locale writes them."""
    table = _locale(_current.get())[2]
    return text.translate(table) if table else text


def number(value: float, places: int) -> str:
    """``value`` with ``places`` decimals and the locale's grouping and digits."""
    loc, pattern, table = _locale(_current.get())
    fmt = pattern + ("." + "0" * places if places > 0 else "")
    text = format_decimal(value, format=fmt, locale=loc)
    return text.translate(table) if table else text


def clock(ts: float, with_date: bool = False) -> str:
    """A wall time as the gateway's local ``HH:MM`` (``d MMM HH:MM`` with a date)."""
    loc, _p, table = _locale(_current.get())
    moment = datetime.datetime(*time.localtime(ts)[:6])
    text = format_datetime(moment, "d MMM HH:mm" if with_date else "HH:mm", locale=loc)
    return text.translate(table) if table else text


def pick(cookie: str | None, accept: str | None) -> str:
    """The language: the user's choice (cookie), else the browser's, else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower().split("-")[0]
        if code in LANGUAGES:
            return code
    return DEFAULT


def script_strings() -> dict[str, Any]:
    """What the page's script says, in the current language."""
    return {
        "s": _("{n} s ago"), "min": _("{n} min ago"), "h": _("{n} h ago"),
        "d": _("{n} d ago"), "updated": _("updated {t}"),
        "unreachable": _("gateway unreachable, last data {t}"),
        "failed": _("failed"), "digits": digits("0123456789"),
        "done": {"confirm": _("confirmed"), "reject": _("rejected"),
                 "snooze": _("snoozed"), "acknowledge": _("acknowledged")},
    }

