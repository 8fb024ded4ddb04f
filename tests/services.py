"""Real services for the tests that need them: a PostgreSQL server and an ``mlflow server``.

Both bind 127.0.0.1 on a free port, live in a temporary directory for the session, and are
stopped at the end. Where the binaries are absent the tests that use them are skipped with
the reason (``.ci/run`` installs Debian's postgresql). The fixtures wrap the context managers
:func:`start_postgres` and :func:`start_mlflow_server`, which ``benchmarks/chaos.py`` uses too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Unavailable(RuntimeError):
    """A service cannot run on this machine; the message says why (tests skip with it)."""


def _as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as 'postgres' when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
    if not shutil.which("runuser"):
        raise Unavailable("running as root and runuser is missing to run PostgreSQL as 'postgres'")
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def start_postgres() -> Iterator[Callable[..., str]]:
    """A throwaway PostgreSQL server on 127.0.0.1; yields a function ``url(dbname)`` that
    creates the database and returns its SQLAlchemy URL. Raises :class:`Unavailable` where
    the driver or the server binaries are missing."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg2 is needed to talk to PostgreSQL") from None
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql")
    prefix = _as_user()
    root = Path(tempfile.mkdtemp(prefix="scaling-pg-"))
    if prefix:
        info = pwd.getpwnam("postgres")
        os.chown(root, info.pw_uid, info.pw_gid)
    data = root / "data"
    port = free_port()
    run = lambda *args: subprocess.run([*prefix, *map(str, args)], check=True, capture_output=True)  # noqa: E731
    run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -h 127.0.0.1 -c fsync=off -c max_connections=200"
    run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "-t", "60", "start")
    created: set[str] = set()

    def url(dbname: str, driver: str = "postgresql+psycopg2") -> str:
        if dbname not in created:
            run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", dbname)
            created.add(dbname)
        return f"{driver}://postgres@127.0.0.1:{port}/{dbname}"

    try:
        yield url
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def start_mlflow_server(backend: str, folder: Path) -> Iterator[str]:
    """A real ``mlflow server`` (one worker) on the ``backend`` store, its artifacts and log
    under ``folder``; yields its http URL once ``/health`` answers (RuntimeError after 60 s)."""
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", backend,
        "--artifacts-destination", artifacts.as_uri(),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not answer /health within 60 s (log: {log.name})")
            time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (:func:`start_postgres`) for the session; skipped where absent."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(start_postgres())
        except Unavailable as error:
            pytest.skip(str(error))
        yield url


@pytest.fixture(scope="session")
def mlflow_server(postgres_server, tmp_path_factory):
    """A real ``mlflow server`` (:func:`start_mlflow_server`) on PostgreSQL; yields its http URL."""
    try:
        with start_mlflow_server(postgres_server("mlflow"), tmp_path_factory.mktemp("mlflow-server")) as url:
            yield url
    except RuntimeError as error:
        pytest.fail(str(error))
