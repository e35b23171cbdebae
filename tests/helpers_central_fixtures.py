"""The central receiver test fixtures (a plugin: pytest_plugins = ("helpers_central_fixtures",)).

Kept apart from helpers_central so pytest can load this module itself (and
rewrite its asserts) before any test module imports it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
import pytest_asyncio
from helpers_central import KEYS, PG_ADMIN, central_config, pg_available

from agent.central import CentralHandle, run_central
from agent.central.store import CentralStore, open_store


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    if not pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"dairy_central_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[CentralStore]:
    opened = open_store(database_url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture
async def central(store: CentralStore, database_url: str) -> AsyncIterator[CentralHandle]:
    handle = await run_central(central_config(database_url), KEYS, store=store)
    try:
        yield handle
    finally:
        await handle.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session
