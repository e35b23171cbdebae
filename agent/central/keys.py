"""Gateway keys: which key may write as which gateway.

Every key has an id, a secret and the one gateway it belongs to. Keys live in
the central database (table ``gateway_keys``, managed with ``dairy-edge central
keys add|rotate|revoke|list``), so every receiver on that database knows them.
At most ``MAX_ACTIVE_PER_GATEWAY`` keys of a gateway are valid at once: the
current one and, during a rotation, the next.

Keys from secrets (``DAIRY_EDGE_CENTRAL_KEYS``, ``DAIRY_EDGE_HMAC_KEY``) still
work, for configs from before per-gateway keys:

- ``<gateway id>/<key id>=<secret>`` binds the key to that gateway, like a
  database key;
- ``<key id>=<secret>`` (and ``DAIRY_EDGE_HMAC_KEY``) is a *fleet key*: it may
  write as any gateway that has no key of its own (none in the database, none
  bound in secrets). Registering a gateway's key therefore locks the fleet key
  out of that gateway; docs/central-keys.md has the migration.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import ConfigError

log = logging.getLogger(__name__)

MAX_ACTIVE_PER_GATEWAY = 2
# Key ids travel in a header and in the gateway's config (sync.key_id, SAFE_ID).
KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
GATEWAY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
REFRESH_S = 5.0  # how stale the database keys may be (a revocation takes this long)
UNKNOWN_REFRESH_S = 1.0  # an unknown key id reloads the keys at most this often
_LOAD_TIMEOUT_S = 2.0


class KeyRuleError(ConfigError):
    """A key operation the rules forbid (unknown gateway id, too many keys, ...)."""


@dataclass(frozen=True, slots=True)
class GatewayKey:
    key_id: str
    secret: bytes
    device_id: str | None  # None: a fleet key from secrets (see the module docstring)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as stored (the secret only where the caller needs it)."""

    key_id: str
    device_id: str
    secret: str
    created_at: str
    revoked_at: str | None


class KeyStore(Protocol):
    async def key_rows(self, include_revoked: bool = False) -> list[KeyRow]: ...


def new_secret() -> str:
    """A fresh key: 256 random bits, URL-safe text (fits an environment variable)."""
    return secrets.token_urlsafe(32)


def new_key_id(device_id: str) -> str:
    """A readable, unique key id: the gateway id's safe characters and 8 random hex digits."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", device_id)[:40].strip("-") or "gw"
    return f"{stem}-{secrets.token_hex(4)}"


def check_gateway(device_id: str) -> str:
    if not GATEWAY_RE.fullmatch(device_id):
        raise KeyRuleError(f"gateway id {device_id!r}: expected 1 to 128 of A-Z a-z 0-9 _ . : -")
    return device_id


def check_key_id(key_id: str) -> str:
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyRuleError(f"key id {key_id!r}: expected 1 to 64 of A-Z a-z 0-9 _ -")
    return key_id


def keys_to_revoke(device_id: str, active: list[str], rotate: bool) -> list[str]:
    """The active keys (oldest first) to revoke before one more is added.

    Raises KeyRuleError when the gateway is at the limit and this is no rotation.
    """
    over = len(active) + 1 - MAX_ACTIVE_PER_GATEWAY
    if over <= 0:
        return []
    if not rotate:
        raise KeyRuleError(
            f"gateway {device_id} has {len(active)} active keys ({', '.join(active)}), the "
            "most allowed; `rotate` replaces the oldest, `revoke` removes one"
        )
    return active[:over]


def parse_keys(text: str) -> dict[str, GatewayKey]:
    """``[<gateway>/]<key id>=<secret>`` items, one per line or comma-separated."""
    keys: dict[str, GatewayKey] = {}
    for item in re.split(r"[,\n]", text):
        item = item.strip()
        if not item:
            continue
        name, sep, secret = item.partition("=")
        # Only the item's ends are trimmed: an id with a space or control character inside
        # (or before "/" or "=") is an error, never silently another id.
        gateway, slash, key_id = name.rpartition("/")
        secret = secret.strip()
        if not sep or not secret or not KEY_ID_RE.fullmatch(key_id) or (
            slash and not GATEWAY_RE.fullmatch(gateway)
        ):
            raise ConfigError(
                "central_keys: expected <key id>=<key> or <gateway id>/<key id>=<key> items, "
                "comma- or newline-separated"
            )
        keys[key_id] = GatewayKey(key_id, secret.encode(), gateway or None)
    return keys


def static_keys(keys: Mapping[str, bytes | GatewayKey]) -> dict[str, GatewayKey]:
    """Keys passed in code: plain bytes are fleet keys, GatewayKey as given."""
    out: dict[str, GatewayKey] = {}
    for key_id, value in keys.items():
        if isinstance(value, GatewayKey):
            out[key_id] = value
        else:
            out[key_id] = GatewayKey(key_id, bytes(value), None)
    return out


class KeysUnavailable(Exception):
    """The database keys were never loaded: a key cannot be judged yet (answer 503)."""


class Keyring:
    """The keys a receiver checks against: secrets plus the database, reloaded every few s.

    Lookups never wait for the database once the keys were loaded: a stale key
    set is reloaded in the background while requests go on with the keys they
    have (a revocation takes at most ``REFRESH_S`` plus one load). An unknown
    key id waits for a reload at most once a second (so a key just added works
    at once). If the database cannot be read, the keys last read stay in use.

    Until one load has succeeded the keyring fails closed: a fleet key, or a
    key id it does not know, raises KeysUnavailable (503), because which
    gateways have keys of their own is not known yet. Only that first load is
    waited for by requests.
    """

    def __init__(self, static: Mapping[str, bytes | GatewayKey], store: Any | None) -> None:
        self._static = static_keys(static)
        self._store = store if hasattr(store, "key_rows") else None
        self._db: dict[str, GatewayKey] = {}
        self._bound: frozenset[str] = frozenset()
        self._loaded_mono = -1e9  # the last load attempt, failed or not
        self._unknown_mono = -1e9  # the last reload asked for by an unknown key id
        self.loaded = self._store is None  # whether one load has succeeded
        self._lock = asyncio.Lock()  # one load at a time
        self._task: asyncio.Task[None] | None = None  # the background reload, if any
        self.last_error: str | None = None
        self._recompute_bound()
        fleet = sorted(k for k, v in self._static.items() if v.device_id is None)
        if fleet:
            log.warning(
                "central: fleet key(s) %s may write as any gateway without a key of its own; "
                "register per-gateway keys with `dairy-edge central keys add`", ", ".join(fleet)
            )

    def __len__(self) -> int:
        return len(self._static) + len(self._db)

    def _recompute_bound(self, db_devices: frozenset[str] = frozenset()) -> None:
        bound = {k.device_id for k in self._static.values() if k.device_id is not None}
        self._bound = frozenset(bound | db_devices)

    async def refresh(self, older_than_s: float = 0.0) -> None:
        """Reload the database keys now (one reload at a time); waits for it.

        With ``older_than_s``, only when the keys are at least that old once the
        lock is ours: callers that queued behind one reload do not each run another.
        """
        if self._store is None:
            return
        async with self._lock:
            if older_than_s and time.monotonic() - self._loaded_mono < older_than_s:
                return
            try:
                async with asyncio.timeout(_LOAD_TIMEOUT_S):
                    rows = await self._store.key_rows(include_revoked=True)
            except Exception as err:  # noqa: BLE001 - keep the keys we have, say why
                self.last_error = f"{type(err).__name__}: {err}"[:200]
                self._loaded_mono = time.monotonic()  # do not hammer a failing database
                log.warning("central: cannot reload gateway keys (%s); %s", self.last_error,
                            "using the last ones" if self.loaded
                            else "fleet keys are refused (503) until the keys load")
                return
            self.last_error = None
            active: dict[str, GatewayKey] = {}
            for row in rows:
                if row.revoked_at is None:
                    active[row.key_id] = GatewayKey(row.key_id, row.secret.encode(), row.device_id)
            self._db = active
            # Every gateway that ever had a key is closed to fleet keys, even after a revoke.
            self._recompute_bound(frozenset(row.device_id for row in rows))
            self._loaded_mono = time.monotonic()
            self.loaded = True

    def _reload(self, older_than_s: float) -> asyncio.Task[None]:
        """The reload in progress, or a new one started in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.refresh(older_than_s),
                                             name="central-key-reload")
        return self._task

    async def maybe_refresh(self) -> None:
        """Reload stale keys: in the background, or waited for until the first load succeeded."""
        if self._store is None:
            return
        every = REFRESH_S if self.loaded else UNKNOWN_REFRESH_S
        if time.monotonic() - self._loaded_mono < every:
            return
        task = self._reload(every)
        if not self.loaded:
            await asyncio.shield(task)  # a request given up on does not cancel the load

    async def lookup(self, key_id: str) -> GatewayKey | None:
        """The key with this id, or None; reloads first when stale or unknown (rate-limited).

        Raises KeysUnavailable for an unknown key id while no load has succeeded.
        """
        await self.maybe_refresh()
        key = self._db.get(key_id) or self._static.get(key_id)
        now = time.monotonic()
        if key is None and self._store is not None and (
            now - self._unknown_mono >= UNKNOWN_REFRESH_S
        ):
            # Rate-limited on its own: a reload in the background (or at start) does not
            # delay a key added just now.
            self._unknown_mono = now
            await asyncio.shield(self._reload(0.0))
            key = self._db.get(key_id) or self._static.get(key_id)
        if key is None and not self.loaded:
            raise KeysUnavailable(self._unavailable())
        return key

    def may_write(self, key: GatewayKey, device_id: str) -> bool:
        """Whether ``key`` may store batches as ``device_id``.

        Raises KeysUnavailable for a fleet key while no load has succeeded: which
        gateways have keys of their own is not known, so it is refused, not let through.
        """
        if key.device_id is not None:
            return key.device_id == device_id
        if not self.loaded:
            raise KeysUnavailable(self._unavailable())
        return device_id not in self._bound

    def _unavailable(self) -> str:
        return ("the gateway keys could not be read from the database yet"
                + (f" ({self.last_error})" if self.last_error else ""))

    def health(self) -> str:
        """For /healthz: "ok", or why the keys are missing or stale."""
        if not self.loaded:
            return "not loaded" + (f": {self.last_error}" if self.last_error else "")
        if self.last_error:
            return f"stale (the last reload failed: {self.last_error})"
        return "ok"

    async def close(self) -> None:
        """Stop a background reload (at shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
