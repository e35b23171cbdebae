"""Logging for a headless daemon: plain lines for a terminal, JSON for journald."""

from __future__ import annotations

import json
import logging
import sys

from agent.config.model import LoggingConfig


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.json_format:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    # paho and aiohttp are chatty at INFO; their warnings still show.
    for noisy in ("aiohttp.access", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
