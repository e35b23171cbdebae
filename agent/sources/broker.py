"""A broker for ``dairy-edge demo`` on a machine with nothing installed.

``ensure_broker`` uses a broker that already listens at host:port (Mosquitto in
a real barn); only when none answers does it start amqtt, a pure-Python MQTT
3.1.1 broker, inside this process on a free loopback port. amqtt speaks 3.1.1
only, so the agent reaches it through its "auto" protocol fallback.

amqtt keeps the queue of a disconnected persistent session in memory and only
for sessions it does not consider anonymous, so the embedded broker uses
``LocalAuthPlugin`` below (accept every client, keep its session). It listens on
127.0.0.1 only: it is a demo broker without credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from agent.errors import TransientError

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 1.0
_EMBEDDED_HOST = "127.0.0.1"


@dataclass
class BrokerHandle:
    """Where the broker listens, and how to stop it if we started it."""

    host: str
    port: int
    embedded: bool
    # amqtt speaks MQTT 3.1.1 only; "auto" would find out after a keepalive.
    protocol: str | None = None
    _broker: Any = field(default=None, repr=False)

    async def stop(self) -> None:
        """Shut the embedded broker down; a no-op for an external broker. Idempotent."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await broker.shutdown()
        except Exception:  # shutting down a demo broker must not fail the caller
            log.warning("embedded broker did not shut down cleanly", exc_info=True)


async def broker_listening(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def ensure_broker(host: str, port: int, fallback: bool = True) -> BrokerHandle:
    """Use the broker at host:port if one answers, else start an embedded one.

    :param host: where the configured broker should be.
    :param port: its port.
    :param fallback: when the embedded broker cannot listen on ``port``, take a
        free one (False: that is an error; the port was asked for explicitly).
    :returns: a handle with the port to connect to; ``await handle.stop()`` at exit.
    :raises TransientError: the embedded broker could not start.
    """
    if await broker_listening(host, port):
        log.info("using the MQTT broker at %s:%d", host, port)
        return BrokerHandle(host=host, port=port, embedded=False)
    return await start_embedded_broker(port, fallback=fallback)


async def start_embedded_broker(port: int = 0, fallback: bool = True) -> BrokerHandle:
    """Start amqtt on 127.0.0.1 at ``port`` (the port asked for, so the demo's
    ``--mqtt-port`` holds), or, with ``fallback``, a port the kernel picks when
    that one cannot be had."""
    try:
        from amqtt.broker import Broker
    except ImportError as err:  # amqtt is a dependency, but a stripped install may lack it
        raise TransientError("no broker running and amqtt is not installed") from err

    broker = None
    for bind in dict.fromkeys((port, 0) if fallback else (port,)):
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{_EMBEDDED_HOST}:{bind}"}},
            "plugins": {f"{__name__}.LocalAuthPlugin": {}},
        }
        broker = Broker(config)
        try:
            await broker.start()
            break
        except Exception as err:  # amqtt raises its own BrokerError and plain OSErrors
            if bind == 0 or not fallback:
                raise TransientError(
                    f"embedded broker did not start on port {bind}: {err}"
                    + ("" if bind == 0 else "; choose another port")) from err
            log.warning("embedded broker cannot listen on port %d (%s); taking a free one",
                        bind, err)
    assert broker is not None
    port = _bound_port(broker)
    log.info("started an embedded MQTT broker (amqtt) on %s:%d", _EMBEDDED_HOST, port)
    return BrokerHandle(
        host=_EMBEDDED_HOST, port=port, embedded=True, protocol="3.1.1", _broker=broker
    )


def _bound_port(broker: Any) -> int:
    # amqtt has no public accessor for the listening socket; bind ":0" leaves
    # the real port only on the asyncio server.
    server = broker._servers["default"].instance
    return int(server.sockets[0].getsockname()[1])


def _make_auth_plugin() -> type:
    from amqtt.plugins.base import BaseAuthPlugin

    class _LocalAuthPlugin(BaseAuthPlugin):
        """Accept every client without marking it anonymous, so amqtt keeps
        persistent sessions and queues QoS 1 messages while they are away."""

        @dataclass
        class Config:
            pass

        async def authenticate(self, *, session: Any) -> bool:
            return True

    _LocalAuthPlugin.__name__ = _LocalAuthPlugin.__qualname__ = "LocalAuthPlugin"
    return _LocalAuthPlugin


try:
    LocalAuthPlugin: type | None = _make_auth_plugin()
except ImportError:  # without amqtt there is no embedded broker to configure
    LocalAuthPlugin = None
