"""Where the tests get a real PostgreSQL server, and throwaway databases on it.

One function serves the local run, CI and the GitHub workflow: a DSN from SUPAMIGRATE_TEST_DSN,
else a testcontainers Postgres where a Docker engine answers, else a throwaway cluster made with
initdb/pg_ctl. When SUPAMIGRATE_REQUIRE_POSTGRES is set (CI), having none is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

ENV_DSN = "SUPAMIGRATE_TEST_DSN"
ENV_REQUIRE = "SUPAMIGRATE_REQUIRE_POSTGRES"


class NoPostgres(RuntimeError):
    pass


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _local_cluster() -> Iterator[str]:
    initdb = shutil.which("initdb")
    pg_ctl = shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise NoPostgres("no initdb/pg_ctl on PATH")
    root = Path(tempfile.mkdtemp(prefix="supamigrate-pg-"))
    data = root / "data"
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root; hand the folder to the postgres account.
        shutil.chown(root, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
         "-l", str(root / "log"), "-w", "start"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin DSN (database `postgres`) of a server the tests may create databases on."""
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        yield dsn
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as pg:
            yield pg.get_connection_url()
        return
    with _local_cluster() as local:
        yield local


def with_database(admin_dsn: str, dbname: str) -> str:
    """The same server with another database, as a postgresql:// URI (what users pass as --source)."""
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    user = info.get("user") or "postgres"
    password = f":{info['password']}" if info.get("password") else ""
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{dbname}"


@contextlib.contextmanager
def throwaway_database(admin_dsn: str, prefix: str = "smtest") -> Iterator[str]:
    """Create a uniquely named database, yield its DSN, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin_dsn, name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
