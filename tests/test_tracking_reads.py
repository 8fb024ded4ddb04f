"""Commands that read MLflow fail fast, in one line, and never create a database.

Through the real command line (``scaling.cli.main`` in-process, and once as a subprocess):
a closed port on 127.0.0.1, a port that accepts connections and never answers, a mistyped
URI, and a sqlite file that does not exist. Before this, ``fit`` against a closed port
hung 252 s and printed a 129-line traceback, and a read against a missing sqlite file
created an empty ``mlflow.db``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import free_port

from scaling.cli import READ_COMMANDS, main
from scaling.sweeps import tracking

LOOSE_S = 20.0  # the goal is 10 s; loose, for a busy 2-core machine

# Each read command with the arguments it needs besides --tracking-uri.
READS = {
    "fit": ["fit", "--experiment", "sweep"],
    "report": ["report", "--experiment", "sweep", "-o", "out"],
    "compare": ["compare", "--experiment", "sweep", "--target", "abc"],
    "predict": ["predict", "--experiment", "sweep", "--flops", "1e20"],
    "capability": ["capability", "--experiment", "sweep", "--flops", "1e12"],
}


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    """The read commands set MLflow's HTTP settings in os.environ; undo that after each test."""
    for key in tracking.READ_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    yield


def _run(args: list[str], capsys) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(args)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


def test_every_read_command_is_covered():
    assert set(READS) == READ_COMMANDS


@pytest.mark.parametrize("command", sorted(READS))
def test_a_closed_port_fails_fast_in_one_line(command, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err, elapsed = _run([*READS[command], "--tracking-uri", url], capsys)
    assert code == 1
    assert err.startswith(f"error: cannot reach the MLflow tracking server at {url} (")
    assert err.count("\n") == 1 and out == ""
    assert elapsed < LOOSE_S
    assert list(Path(".").iterdir()) == []
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"  # MLflow's own settings, applied


@pytest.mark.parametrize("command", sorted(READS))
def test_a_missing_sqlite_file_is_named_and_not_created(command, capsys):
    code, out, err, _ = _run([*READS[command], "--tracking-uri", "sqlite:///mlflow.db"], capsys)
    assert code == 1
    expected = f"error: no tracking database at {Path('mlflow.db').resolve()}; run a sweep first or pass --tracking-uri\n"
    assert err == expected and out == ""
    assert list(Path(".").iterdir()) == []  # no mlflow.db, no mlruns, no report directory


def test_the_default_uri_in_an_empty_directory_creates_nothing(capsys):
    code, _, err, _ = _run(["fit", "--experiment", "sweep"], capsys)
    assert code == 1 and "no tracking database at" in err
    assert list(Path(".").iterdir()) == []


def test_a_server_that_never_answers_fails_within_seconds(capsys):
    with socket.socket() as silent:  # accepts TCP connections (backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, _, err, elapsed = _run([*READS["fit"], "--tracking-uri", url], capsys)
    assert code == 1
    assert err.startswith(f"error: cannot reach the MLflow tracking server at {url} (")
    assert err.count("\n") == 1
    assert elapsed < LOOSE_S


@pytest.mark.parametrize(
    "uri, message",
    [
        ("htp://127.0.0.1:5000", "tracking URI 'htp://127.0.0.1:5000' is not one MLflow reads; use sqlite:///mlflow.db or http://HOST:PORT"),
        ("127.0.0.1:5000", "tracking URI '127.0.0.1:5000' is not one MLflow reads"),
        ("sqlite://mlflow.db", "tracking URI 'sqlite://mlflow.db': a sqlite URI has three slashes"),
    ],
)  # fmt: skip
def test_a_mistyped_uri_is_one_line(uri, message, capsys):
    code, _, err, _ = _run([*READS["fit"], "--tracking-uri", uri], capsys)
    assert code == 1
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert list(Path(".").iterdir()) == []


def test_the_installed_command_fails_fast_against_a_closed_port(tmp_path):
    """The whole process, interpreter start included, as a user runs it."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "fit", "--experiment", "sweep", "--tracking-uri", url],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach the MLflow tracking server at {url}")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert elapsed < LOOSE_S
    assert list(tmp_path.iterdir()) == []


def test_reads_in_the_library_refuse_a_missing_database_too(tmp_path):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    with pytest.raises(tracking.TrackingError, match=r"no tracking database at .*mlflow.db; run a sweep first"):
        tracking.runs_frame("sweep", tracking_uri=uri)
    with pytest.raises(tracking.TrackingError, match=r"no tracking database at"):
        tracking.find_runs("sweep", tracking_uri=uri)
    assert not (tmp_path / "mlflow.db").exists()


def test_a_database_found_in_one_directory_is_not_assumed_in_another(tmp_path, monkeypatch):
    """The once-per-process check is per file: a relative sqlite URI means another file after a
    change of directory."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    tracking.setup_experiment("sweep", tracking_uri="sqlite:///mlflow.db")
    assert tracking.runs_frame("sweep", tracking_uri="sqlite:///mlflow.db").empty
    monkeypatch.chdir(second)
    with pytest.raises(tracking.TrackingError, match="no tracking database at"):
        tracking.runs_frame("sweep", tracking_uri="sqlite:///mlflow.db")
    assert list(second.iterdir()) == []


def test_a_server_that_hangs_after_its_health_check_fails_in_seconds(capsys):
    """Up (``/health`` answers) but every API call hangs, as an overloaded server or a stuck
    proxy does: MLflow's own timeout and retry settings (READ_SETTINGS) end the read, in one
    line. With MLflow's defaults (120 s per try, 7 retries) this took many minutes."""
    import http.server
    import threading

    release = threading.Event()

    class Hanging(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path == "/health":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")
            else:
                release.wait(60)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code, _, err, elapsed = _run([*READS["fit"], "--tracking-uri", url], capsys)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert code == 1
    assert err.startswith(f"error: cannot read MLflow at {url} (") and err.count("\n") == 1
    assert "check that the server is up and --tracking-uri" in err
    assert elapsed < LOOSE_S
