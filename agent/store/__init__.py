"""The SQLite buffer: one writer thread, migrations, outbox, read side."""

from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter

__all__ = ["StoreReader", "StoreWriter"]
