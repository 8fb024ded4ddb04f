"""Commands that read MLflow fail fast, in one line, and never create a database.

Through the real command line (``scaling.cli.main`` in-process, and once as a subprocess):
a closed port on 127.0.0.1, a port that accepts connections and never answers, a server
that answers ``/health`` and then hangs on every API call, a mistyped URI, and a sqlite file
that does not exist. Before this, ``fit`` against a closed port hung 252 s and printed a
129-line traceback, a read against a missing sqlite file created an empty ``mlflow.db``, and
against the server that hangs after ``/health`` ``fit`` took 13-16 s (now 4-6 s: the REST API
must answer within 3 s, scaling.sweeps.tracking._check_api).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from services import free_port

from scaling.cli import READ_COMMANDS, main
from scaling.sweeps import tracking

LOOSE_S = 20.0  # the goal is 10 s; loose, for a busy 2-core machine
GOAL_S = 10.0  # a server that is up but hangs: the whole command, interpreter start included

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
    monkeypatch.setattr(tracking, "_fail_fast", False)  # fail_fast_reads() sets it too
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


@contextlib.contextmanager
def _server_up_but_hanging(api_status: int | None = None):
    """A tiny HTTP server in a thread: ``GET /health`` answers 200 at once; every other
    request (MLflow's REST API) never gets an answer, or gets ``api_status`` when given, as
    from an overloaded server, a stuck proxy or a server that refuses the client. Yields its URL."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            if self.path == "/health":
                self._send(200, b"OK")
            elif api_status is not None:
                self._send(api_status, b'{"error_code": "PERMISSION_DENIED", "message": "not you"}')
            else:
                release.wait(60)  # the connection stays open, unanswered

        def _send(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # the names http.server calls

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", sorted(READS))
def test_a_server_that_hangs_after_its_health_check_fails_in_seconds(command, capsys):
    """Up (``/health`` answers) but every API call hangs: the read's first check asks the REST
    API for an answer within 3 s, before mlflow is imported, and ends the command in one line.
    With only MLflow's timeout settings (READ_SETTINGS: two tries of 4 s after the import) this
    took 13-16 s; with MLflow's defaults (120 s per try, 7 retries), many minutes."""
    with _server_up_but_hanging() as url:
        code, out, err, elapsed = _run([*READS[command], "--tracking-uri", url], capsys)
    assert code == 1 and out == ""
    assert err == (
        f"error: cannot read MLflow at {url} (its REST API did not answer within 3 s, though "
        "/health did); check that the server is up and --tracking-uri\n"
    )
    assert elapsed < GOAL_S
    assert list(Path(".").iterdir()) == []


def test_the_installed_command_fails_within_10_s_against_a_server_that_hangs(tmp_path):
    """The whole ``scaling fit`` process, interpreter start and imports included, as a user
    runs it against a server that is up but never answers an API call."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with _server_up_but_hanging() as url:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "scaling", "fit", "--experiment", "X", "--tracking-uri", url],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: cannot read MLflow at {url} (its REST API did not answer")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert elapsed < GOAL_S, f"{elapsed:.1f} s"
    assert list(tmp_path.iterdir()) == []


def test_an_api_that_answers_with_an_error_passes_the_check_and_mlflow_says_why(capsys):
    """Any HTTP answer counts as an answer: a 403 (a proxy or an auth plugin refusing the
    client) reaches MLflow's own client, whose error becomes the one line."""
    with _server_up_but_hanging(api_status=403) as url:
        code, out, err, elapsed = _run([*READS["fit"], "--tracking-uri", url], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot read MLflow at {url} (PERMISSION_DENIED: not you)")
    assert err.count("\n") == 1 and "did not answer" not in err
    assert elapsed < GOAL_S


@pytest.mark.slow
def test_reads_against_a_real_server_pass_the_api_check(mlflow_server, capsys):
    """The check's request (a one-row experiment search, GET) is one a real ``mlflow server``
    answers: a read gets as far as MLflow's own answer, here that the sweep does not exist."""
    code, out, err, elapsed = _run([*READS["fit"], "--tracking-uri", mlflow_server], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"error: no MLflow experiment 'sweep' at {mlflow_server}")
    assert elapsed < GOAL_S
