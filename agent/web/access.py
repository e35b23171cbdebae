"""Who may use the status page: sessions, one-time login links, login rate
limits and the Host check. All in memory (a restart logs everybody out) and
on the monotonic clock."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent.web.users import CHANGERS, UserStore

SESSION_COOKIE = "de_session"
LOGIN_CSRF_COOKIE = "de_login"
MAX_SESSIONS = 1000
LINK_TTL_S = 15 * 60.0
# Failed logins allowed per client address and per user name in the window.
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 300.0
# Password checks (argon2id, 64 MiB each) run at most this many at once, on their
# own threads; at most LOGIN_QUEUE more wait, the rest are answered 429 at once.
LOGIN_WORKERS = 2
LOGIN_QUEUE = 4

Clock = Callable[[], float]
ActionLog = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Session:
    token: str
    user: str
    role: str
    csrf: str
    created: float
    seen: float
    stamp: str = ""  # the user's stamp at login (User.stamp)

    @property
    def can_change(self) -> bool:
        return self.role in CHANGERS


class Sessions:
    """Session tokens (random, 256 bits) to users, with an idle timeout."""

    def __init__(self, idle_s: float, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._by_token: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str, role: str, stamp: str = "") -> Session:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = Session(token, user, role, secrets.token_urlsafe(32), now, now, stamp)
        self._by_token[token] = session
        while len(self._by_token) > MAX_SESSIONS:
            self._by_token.popitem(last=False)  # the least recently used goes
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle_s:
            del self._by_token[token]
            return None
        session.seen = now
        self._by_token.move_to_end(token)
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def drop_user(self, user: str) -> None:
        for token in [t for t, s in self._by_token.items() if s.user == user]:
            del self._by_token[token]


class LoginLinks:
    """One-time login links (the demo prints one): a token good once, for 15 min."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._links: dict[str, tuple[str, float]] = {}

    def create(self, user: str, ttl_s: float = LINK_TTL_S) -> str:
        token = secrets.token_urlsafe(32)
        self._links[token] = (user, self.clock() + ttl_s)
        return token

    def use(self, token: str) -> str | None:
        entry = self._links.pop(token, None)
        if entry is None or self.clock() > entry[1]:
            return None
        return entry[0]


class RateLimit:
    """At most ``limit`` failures per key in ``window_s``; bounded memory."""

    def __init__(self, limit: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S,
                 clock: Clock = time.monotonic, max_keys: int = 10_000) -> None:
        self.limit, self.window_s, self.clock, self.max_keys = limit, window_s, clock, max_keys
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        # Attempts begun and not yet judged: they count as failures until they are.
        self._pending: dict[str, int] = {}

    def _recent(self, key: str) -> deque[float]:
        times = self._fails.get(key)
        if times is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login may be tried again for every key (0: now)."""
        wait = 0.0
        for key in keys:
            times = self._recent(key)
            if len(times) >= self.limit:
                wait = max(wait, times[0] + self.window_s - self.clock())
            elif len(times) + self._pending.get(key, 0) >= self.limit:
                wait = max(wait, 1.0)  # the checks under way decide: try again shortly
        return max(0.0, wait)

    def begin(self, *keys: str) -> None:
        """An attempt is being checked: count it against the limit until :meth:`end`."""
        for key in keys:
            self._pending[key] = self._pending.get(key, 0) + 1

    def end(self, *keys: str, failed: bool) -> None:
        """The attempt begun for ``keys`` was judged: a failure is recorded."""
        for key in keys:
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)
        if failed:
            self.fail(*keys)

    def fail(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._fails.setdefault(key, deque(maxlen=self.limit * 2))
            times.append(now)
            self._fails.move_to_end(key)
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)

    def clear(self, *keys: str) -> None:
        for key in keys:
            self._fails.pop(key, None)


class PasswordChecks:
    """Slow password checks off the event loop, a few at a time.

    Each argon2id check takes 64 MiB for about 0.1 s: unbounded, concurrent logins
    would take the agent past its memory limit. ``run`` answers None at once when
    ``workers`` checks run and ``queue`` more wait (the caller answers 429).
    """

    def __init__(self, workers: int = LOGIN_WORKERS, queue: int = LOGIN_QUEUE) -> None:
        self.workers, self.queue = workers, queue
        self._executor: ThreadPoolExecutor | None = None
        self._in = 0  # running and waiting

    @property
    def busy(self) -> int:
        return self._in

    async def run(self, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """(True, fn(*args)) run on the checks' threads, or (False, None) when full."""
        if self._in >= self.workers + self.queue:
            return False, None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="web-login")
        self._in += 1
        try:
            return True, await asyncio.get_running_loop().run_in_executor(
                self._executor, fn, *args)
        finally:
            self._in -= 1

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def default_hosts() -> list[str]:
    """Names the page answers to without configuration: localhost and this
    machine's own names (``gw1``, ``gw1.local``)."""
    name = socket.gethostname().lower()
    names = ["localhost", name]
    if name and "." not in name:
        names.append(f"{name}.local")
    return names


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """The Host header names an allowed name or is an IP literal.

    IP literals are always accepted: DNS rebinding, which this check stops,
    needs a host *name* the attacker controls.
    """
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        literal, rest = host[1:end], host[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        pass
    return name.rstrip(".") in allowed


@dataclass
class WebAccess:
    """Everything the page needs to decide who may do what.

    :param users: the users file; None turns the login off (only allowed when the
        page listens on a loopback address: a test bench).
    :param allowed_hosts: Host header names accepted (IP literals always are).
    :param metrics_open: serve /metrics without a login (read-only).
    :param secure_cookies: set the ``Secure`` cookie flag (the page is on HTTPS).
    :param record_action: keeps each user action (who, what, when) as a synced event.
    """

    users: UserStore | None
    allowed_hosts: frozenset[str] = frozenset({"localhost"})
    metrics_open: bool = False
    secure_cookies: bool = False
    session_idle_s: float = 12 * 3600.0
    record_action: ActionLog | None = None
    clock: Clock = time.monotonic
    sessions: Sessions = field(init=False)
    links: LoginLinks = field(init=False)
    limits: RateLimit = field(init=False)
    checks: PasswordChecks = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.session_idle_s, self.clock)
        self.links = LoginLinks(self.clock)
        self.limits = RateLimit(clock=self.clock)
        self.checks = PasswordChecks()

    @property
    def login(self) -> bool:
        return self.users is not None

    def login_link(self, user: str) -> str:
        """The path of a one-time login link for ``user`` (who must exist)."""
        return f"/login/link/{self.links.create(user)}"

    def record(self, session: Session | None, action: str, **detail: Any) -> None:
        if self.record_action is None:
            return
        self.record_action({
            "user": session.user if session else detail.pop("user", None),
            "role": session.role if session else None,
            "action": action,
            **detail,
        })
