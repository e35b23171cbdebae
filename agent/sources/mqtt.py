"""The broker boundary: a persistent MQTT session whose messages are
acknowledged only after the runtime has committed them (R2, R7, R9).

``MqttSource`` owns one paho client on paho's own network thread. Each message
goes to the runtime's ``MessageHandler`` with an ``ack`` callable; the broker
gets its PUBACK only when the runtime calls ``ack()`` after the SQLite commit,
so an unacknowledged message is redelivered after a crash, never lost.

An ``ack`` belongs to the connection the message came on. After a reconnect the
broker redelivers what was not acknowledged (persistent session), so a late
``ack`` from an earlier connection is dropped rather than sent: on a new
session its packet id could name a different message.
"""

from __future__ import annotations

import logging
import re
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import metrics
from agent.clock import Clock
from agent.config.model import SAFE_ID, MqttConfig, TlsConfig
from agent.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
# CONNACK codes meaning "I do not speak MQTT 5": 0x84 from a v5-aware broker
# (amqtt sends it too), 1 from a 3.1.1 broker read as a v5 packet.
_UNSUPPORTED_PROTOCOL = {0x84, 0x01}
# Some 3.1.1-only brokers (amqtt, given a last will) cannot parse a v5 CONNECT
# and never answer; paho gives up after the keepalive. After this many
# connections in a row ended without any CONNACK, "auto" falls back as if
# refused. A v5 broker always answers, even to refuse.
_SILENT_CLOSES_BEFORE_FALLBACK = 1
_MAX_QUEUED_PUBLISHES = 1000
_SAFE_ID = re.compile(SAFE_ID)


# -- a cheaper PUBLISH decode for MQTT 5 -------------------------------------------
# paho builds a fresh ``Properties`` for every MQTT 5 PUBLISH; its constructor
# fills two tables of 27 entries (about 20 us a message, more than the rest of
# the decode). Sensor messages carry no properties, so for those the object is
# a shallow copy of an empty one made once (its tables are read-only lookups;
# the properties themselves are instance attributes, none here). Everything
# else goes through paho's own decoder. Installed only where paho has this
# function (paho 2.2's ``_packet.decode_publish``); elsewhere nothing changes.
try:
    from paho.mqtt import _packet as _paho_packet
except ImportError:  # pragma: no cover - an older paho: keep its own decode
    _paho_packet = None  # type: ignore[assignment]

_EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)


def _empty_publish_properties() -> Properties:
    props: Properties = object.__new__(Properties)
    props.__dict__.update(_EMPTY_PUBLISH_PROPERTIES.__dict__)
    return props


def _decode_publish_fast(header: int, packet: bytes | bytearray, protocol: Any) -> Any:
    """paho's ``decode_publish``, without building Properties for an empty block."""
    if protocol == paho.MQTTv5:
        size = len(packet)
        qos = (header & 0x06) >> 1
        if size >= 2:
            topic_end = 2 + ((packet[0] << 8) | packet[1])
            props_at = topic_end + (2 if qos > 0 else 0)
            if props_at < size and packet[props_at] == 0 and 0 < qos < 3:
                return _paho_packet.PublishPacket(
                    dup=((header & 0x08) >> 3) != 0,
                    qos=qos,
                    retain=(header & 0x01) != 0,
                    topic=bytes(packet[2:topic_end]),
                    mid=(packet[topic_end] << 8) | packet[topic_end + 1],
                    properties=_empty_publish_properties(),
                    payload=bytes(packet[props_at + 1 :]),
                )
    assert _paho_decode_publish is not None
    return _paho_decode_publish(header, packet, protocol)


_paho_decode_publish: Callable[..., Any] | None = None
if _paho_packet is not None and callable(getattr(_paho_packet, "decode_publish", None)) \
        and hasattr(_paho_packet, "PublishPacket"):
    _paho_decode_publish = _paho_packet.decode_publish
    if getattr(_paho_decode_publish, "__name__", "") == "decode_publish":
        _paho_packet.decode_publish = _decode_publish_fast


class MessageHandler(Protocol):
    """The runtime's entry point. Runs on the paho thread: enqueue and return.

    ``ack`` may be called from any thread, once the message is committed.
    """

    def __call__(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class MqttStats:
    """Counters since this source was created."""

    connects: int = 0
    gaps: int = 0
    messages: int = 0
    handler_errors: int = 0
    acks: int = 0
    stale_acks: int = 0
    protocol: str = ""


class MqttSource:
    """A persistent MQTT session that hands messages to the runtime.

    :param config: the ``mqtt`` config section.
    :param client_id: the fixed client id (``Config.mqtt_client_id``).
    :param gateway_id: this gateway's id, used in the availability topic.
    :param handler: called for every message with ``(topic, payload, ack)``.
    :param clock: for connection timestamps (monotonic).
    :param password: the broker password, from the secrets, or None.
    :param on_session_gap: called (on the paho thread) whenever the broker had
        no session for us, so messages sent while we were away may be lost.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        gateway_id: str,
        handler: MessageHandler,
        clock: Clock,
        password: str | None,
        on_session_gap: Callable[[], None] | None = None,
    ) -> None:
        for name, value in (("client id", client_id), ("gateway id", gateway_id)):
            if not _SAFE_ID.fullmatch(value):
                raise ConfigError(f"mqtt: invalid {name} {value!r}")
        for topic in config.topics:
            if not valid_topic_filter(topic):
                raise ConfigError(f"mqtt.topics: invalid topic filter {topic!r}")
        self._config = config
        self._client_id = client_id
        self._gateway_id = gateway_id
        self._extra_prefixes: list[str] = []
        self._handler = handler
        self._clock = clock
        self._password = password
        self._on_session_gap = on_session_gap
        self.availability_topic = f"{config.status_prefix}/{gateway_id}/availability"

        self._lock = threading.Lock()
        self._stats = MqttStats()  # connects, gaps, protocol; the per-message counts below
        # Per-message counters as plain ints (a frozen dataclass rebuilt per message
        # cost more than the rest of the callback); ``stats`` puts them together.
        self._messages = 0  # written only on the paho thread
        self._handler_errors = 0  # likewise
        self._acks = 0  # under self._lock
        self._stale_acks = 0  # under self._lock
        self._generation = 0  # bumped on every connect and disconnect
        self._connected = False
        self._session_present: bool | None = None
        self._connected_since: float | None = None
        self._granted: list[str] = []
        self._subscribed_once = False
        self._stopped = False
        self._falling_back = False
        self._opens_without_connack = 0
        self._last_connect_failure = ""
        self._use_v5 = config.protocol != "3.1.1"
        self._client = self._make_client()

    # -- public surface -------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def session_present(self) -> bool | None:
        """The flag of the last successful CONNACK; None before the first."""
        return self._session_present

    @property
    def stats(self) -> MqttStats:
        with self._lock:
            return replace(
                self._stats,
                messages=self._messages,
                handler_errors=self._handler_errors,
                acks=self._acks,
                stale_acks=self._stale_acks,
            )

    @property
    def connected_for_s(self) -> float | None:
        """Seconds since the current connection came up (monotonic), or None."""
        since = self._connected_since
        return None if since is None else self._clock.monotonic() - since

    def subscriptions(self) -> list[str]:
        """The topic filters the broker granted on the current session."""
        with self._lock:
            return list(self._granted)

    def start(self) -> None:
        """Connect in the background; a down broker is retried with backoff, never raised."""
        self._client.connect_async(
            self._config.host,
            self._config.port,
            keepalive=self._config.keepalive_s,
            **self._connect_kwargs(),
        )
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect and stop the network thread.

        The broker keeps our session, so messages sent while we are stopped
        wait for the next start. Idempotent.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        client = self._client
        if self._connected:
            info = client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # connection dropped meanwhile
                log.warning("could not publish offline availability")
        client.disconnect()
        client.loop_stop()
        self._set_disconnected()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish an agent message (alerts, availability) under ``<prefix>/<gateway id>/``.

        While disconnected, paho queues QoS 1/2 messages in memory (bounded).

        :raises ValueError: the topic is outside our prefix or not a plain topic.
        :raises TransientError: paho's outgoing queue is full.
        """
        if not self.topic_allowed(topic):
            raise ValueError(f"refusing to publish to {topic!r}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise TransientError("mqtt outgoing queue full")

    def status_topic(self, *levels: str) -> str:
        """``<prefix>/<gateway id>/<level>/...``; every level must be a safe id."""
        for level in levels:
            if not _SAFE_ID.fullmatch(level):
                raise ValueError(f"unsafe topic level {level!r}")
        return "/".join((self._config.status_prefix, self._gateway_id, *levels))

    def allow_prefix(self, prefix: str) -> None:
        """Also publish under ``prefix/`` (Home Assistant discovery: ``homeassistant``)."""
        if not all(_SAFE_ID.fullmatch(level) for level in prefix.split("/")):
            raise ConfigError(f"mqtt: invalid topic prefix {prefix!r}")
        self._extra_prefixes.append(prefix + "/")

    def topic_allowed(self, topic: str) -> bool:
        for prefix in (f"{self._config.status_prefix}/{self._gateway_id}/",
                       *self._extra_prefixes):
            if topic.startswith(prefix):
                return all(_SAFE_ID.fullmatch(level)
                           for level in topic[len(prefix):].split("/"))
        return False

    # -- client construction --------------------------------------------

    def _make_client(self) -> paho.Client:
        cfg = self._config
        if self._use_v5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=paho.MQTTv5
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._client_id,
                protocol=paho.MQTTv311,
                clean_session=False,
            )
        # R9: a callback error must never stop the network loop; ours catch
        # everything already, this is the second line.
        client.suppress_exceptions = True
        client.manual_ack_set(True)
        client.max_queued_messages_set(_MAX_QUEUED_PUBLISHES)
        # paho annotates the delays as int but sleeps on floats.
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, self._password)
        if cfg.tls.enabled:
            _set_tls(client, cfg.tls)
        client.on_socket_open = self._on_socket_open
        client.on_connect_fail = self._on_connect_fail
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_kwargs(self) -> dict[str, Any]:
        if not self._use_v5:
            return {}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._config.session_expiry_s
        return {"clean_start": False, "properties": props}

    def _start_fallback(self, why: str) -> None:
        if self._falling_back:
            return
        self._falling_back = True
        log.warning("broker did not accept MQTT 5 (%s); retrying as MQTT 3.1.1", why)
        threading.Thread(target=self._fall_back_to_311, name="mqtt-fallback", daemon=True).start()

    def _fall_back_to_311(self) -> None:
        # Runs on its own thread: loop_stop joins the paho thread, which
        # cannot join itself.
        old = self._client
        old.disconnect()
        old.loop_stop()
        with self._lock:
            if self._stopped:
                return
            self._use_v5 = False
            self._client = self._make_client()
        self.start()

    # -- paho callbacks (network thread; keep them short, never raise) ---

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        try:
            if not (self._use_v5 and self._config.protocol == "auto"):
                return
            self._opens_without_connack += 1
            if self._opens_without_connack > _SILENT_CLOSES_BEFORE_FALLBACK:
                self._start_fallback("connection closed without CONNACK")
        except Exception:
            log.exception("mqtt on_socket_open failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the TCP/TLS
        # connect (refused, unreachable, certificate rejected) and retries on
        # its own. Log each new reason once, not once per retry.
        try:
            error = sys.exc_info()[1]
            reason = str(error) if error is not None else "unknown error"
            if reason != self._last_connect_failure:
                self._last_connect_failure = reason
                log.warning(
                    "cannot connect to %s:%d (%s); retrying",
                    self._config.host,
                    self._config.port,
                    reason,
                )
        except Exception:
            log.exception("mqtt on_connect_fail failed")

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        try:
            self._handle_connack(client, bool(flags.session_present), reason)
        except Exception:
            log.exception("mqtt on_connect failed")

    def _handle_connack(self, client: paho.Client, session_present: bool, reason: Any) -> None:
        self._opens_without_connack = 0
        self._last_connect_failure = ""
        if reason.is_failure:
            code = int(reason.value)
            if self._use_v5 and self._config.protocol == "auto" and code in _UNSUPPORTED_PROTOCOL:
                self._start_fallback(str(reason))
            else:
                log.error("broker refused the connection: %s", reason)
            return

        with self._lock:
            self._generation += 1
            self._connected = True
            self._session_present = session_present
            self._connected_since = self._clock.monotonic()
            self._stats = replace(
                self._stats,
                connects=self._stats.connects + 1,
                gaps=self._stats.gaps + (0 if session_present else 1),
                protocol="5" if self._use_v5 else "3.1.1",
            )
            must_subscribe = not session_present or not self._subscribed_once
            if not session_present:
                self._granted = []
        metrics.MQTT_CONNECTED.set(1)
        log.info(
            "connected to %s:%d as %s (MQTT %s, session_present=%s)",
            self._config.host,
            self._config.port,
            self._client_id,
            self._stats.protocol,
            session_present,
        )
        if not session_present:
            # R7: the broker had no session for us; anything published while
            # we were away is gone. Count it, tell the runtime, resubscribe.
            metrics.SESSION_GAPS.inc()
            log.warning("mqtt session not present: possible gap in sensor data")
            if self._on_session_gap is not None:
                try:
                    self._on_session_gap()
                except Exception:
                    log.exception("on_session_gap callback failed")
        if must_subscribe:
            # On the first connect too: the config's topics may have changed
            # while the broker kept the old session.
            client.subscribe([(topic, 1) for topic in self._config.topics])
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        try:
            granted = [
                topic
                for topic, code in zip(self._config.topics, reasons, strict=False)
                if not code.is_failure
            ]
            refused = [t for t in self._config.topics if t not in granted]
            with self._lock:
                self._granted = granted
                self._subscribed_once = True
            if refused:
                log.error("broker refused subscriptions: %s", refused)
        except Exception:
            log.exception("mqtt on_subscribe failed")

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        try:
            if self._connected and not self._stopped:
                log.warning("disconnected from the broker: %s", reason)
            self._set_disconnected()
        except Exception:
            log.exception("mqtt on_disconnect failed")

    def _set_disconnected(self) -> None:
        with self._lock:
            self._generation += 1
            self._connected = False
            self._connected_since = None
        metrics.MQTT_CONNECTED.set(0)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            metrics.MESSAGES_RECEIVED.inc()
            self._messages += 1
            ack = self._make_ack(msg.mid, msg.qos)
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                # Brokers should refuse such topics; hand it on for quarantine.
                topic = bytes(msg._topic).decode("utf-8", "replace")
            self._handler(topic, bytes(msg.payload), ack)
        except Exception:
            # Not acknowledged: the broker keeps the message and redelivers it
            # on the next session; nothing unstored is ever acked.
            metrics.MQTT_HANDLER_ERRORS.inc()
            self._handler_errors += 1
            log.exception("message handler failed; message left unacknowledged")

    def _make_ack(self, mid: int, qos: int) -> Callable[[], None]:
        generation = self._generation
        done = False

        def ack() -> None:
            nonlocal done
            if qos == 0:
                return
            with self._lock:
                if done:
                    return
                done = True
                if generation != self._generation or not self._connected:
                    self._stale_acks += 1
                    return
                self._acks += 1
                self._client.ack(mid, qos)

        return ack


def _set_tls(client: paho.Client, tls: TlsConfig) -> None:
    """Verify the broker against ``ca_file`` (or the system store); present a
    client certificate for mutual TLS when one is configured.

    :raises ConfigError: a file is missing or unreadable, or the key does not
        match the certificate; retrying cannot fix either.
    """
    if tls.key_file and not tls.cert_file:
        raise ConfigError("mqtt.tls: key_file is set but cert_file is not")
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            # Never let OpenSSL prompt on a terminal for an encrypted key: a
            # daemon would hang. An encrypted key fails here instead.
            keyfile_password="",
        )
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        raise ConfigError(f"mqtt.tls: cannot load certificates or key: {err}") from err
    if tls.insecure:
        # Must follow tls_set, which resets it. Skips only the host name
        # check; the chain is still verified against the CA.
        client.tls_insecure_set(True)


def valid_topic_filter(topic: str) -> bool:
    """An MQTT subscription filter: wildcards only as whole levels, '#' last."""
    if not topic or "\x00" in topic or len(topic.encode()) > 65535:
        return False
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True
