"""The tests' PostgreSQL server (tests/postgres.py) is real, on loopback, and gone when stopped."""

import subprocess

import pytest

from tests.postgres import start_postgres

pytestmark = pytest.mark.integration


def test_a_real_postgresql_server_on_loopback_serves_a_new_database_then_stops_by_pid():
    import asyncio

    import asyncpg

    server = start_postgres()
    try:
        url = server.new_database("probe")
        assert url.startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/probe_")

        async def version() -> str:
            connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                return await connection.fetchval("select version()")
            finally:
                await connection.close()

        assert asyncio.run(version()).startswith("PostgreSQL 15")
    finally:
        server.stop()
    assert subprocess.run(["kill", "-0", str(server.pid)], capture_output=True).returncode != 0
    assert not server.folder.exists()
