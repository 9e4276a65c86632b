"""A throw-away PostgreSQL server on 127.0.0.1 for tests of what runs on a PostgreSQL store.

tests/conftest.py registers this module, so any test may ask for the session fixture ``postgres_url``.
Each pytest-xdist worker that uses it starts its own server (its own directory and port).
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DATABASE = "litforge"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; the Debian package creates this system user to run it as
SYSTEM_USER = "postgres"


class PostgresUnavailable(Exception):
    """No server could be started here; the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    url: str
    port: int
    root: Path


def _bin_dir() -> Path:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); install Debian's `postgresql` package"
        )
    newest = max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parent.parent.name)])
    return Path(newest).parent


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root, and `runuser` (to run PostgreSQL as another user) is missing")
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and there is no `{SYSTEM_USER}` system user to run PostgreSQL as"
        ) from None
    return [runuser, "-u", SYSTEM_USER, "--"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], cwd: Path, what: str) -> None:
    # cwd: the server user may not be allowed into the caller's directory
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-1500:]
        raise PostgresUnavailable(f"{what} failed (exit {done.returncode}): {output}")


def _create_database(port: int) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a private server (trust auth on 127.0.0.1 only); stop it and delete its files on exit."""
    bin_dir = _bin_dir()
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="litforge-pg-"))
    data, log = root / "data", root / "server.log"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        if prefix:
            shutil.chown(root, user=SYSTEM_USER, group=pwd.getpwnam(SYSTEM_USER).pw_gid)
        _run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
            + ["--locale=C", "--encoding=UTF8", "--no-sync", "--no-instructions"],
            root,
            "initdb",
        )
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        # another process may take the port between choosing and binding it: choose again
        for attempt in range(3):
            port = _free_port()
            with open(data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 30\n"
                )
            try:
                _run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "start"], root, "pg_ctl start")
                started = True
                break
            except PostgresUnavailable as e:
                in_use = log.exists() and "already in use" in log.read_text(errors="replace")
                if not in_use or attempt == 2:
                    server_log = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                    raise PostgresUnavailable(f"{e}\n{server_log}".strip()) from None
        _create_database(port)
        yield PostgresServer(f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}", port, root)
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], cwd=root, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty database on a server of this test session; skips where none can start."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install -e '.[postgres]'")
    with ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server())
        except PostgresUnavailable as e:
            pytest.skip(f"no PostgreSQL server: {e}")
        yield server.url
