"""How the MLflow backend talks to a server: its own requests are bounded (no retries),
the user's own ``mlflow`` calls keep MLflow's settings, even at the same moment on
another thread; and ``reachable()`` says whether a server answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlhooks_mlflow import MlflowBackend, connection
from mlhooks_mlflow.connection import bounded_requests, health_timeout
from mlhooks_mlflow.testing import MlflowServer, free_port


class Hangup:
    """A TCP port on 127.0.0.1 that takes each connection and closes it unanswered,
    counting them: a server that breaks every request."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def hangup(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hangup]:
    """A server that breaks every request, and MLflow set to retry twice at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    server = Hangup()
    yield server
    server.close()


def connections_for(server: Hangup, call: object) -> int:
    before = server.connections
    with pytest.raises(MlflowException):
        call()  # type: ignore[operator]
    return server.connections - before


def test_mlhooks_requests_are_not_retried_and_the_users_are(hangup: Hangup) -> None:
    client = MlflowClient(hangup.uri)
    assert connections_for(hangup, client.search_experiments) == 3  # MLflow's 2 retries

    def bounded() -> None:
        with bounded_requests():
            client.search_experiments()

    assert connections_for(hangup, bounded) == 1  # mlhooks' writer retries on its own

    # A thread inside the bounded block does not change another thread's calls.
    inside, leave = threading.Event(), threading.Event()

    def writer() -> None:
        with bounded_requests():
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(30)
        assert connections_for(hangup, client.search_experiments) == 3
    finally:
        leave.set()
        thread.join()


def test_the_backend_writes_with_bounded_requests(hangup: Hangup) -> None:
    """What the writer applies goes through the bounded requests: one connection."""
    from mlhooks import RunInfo
    from mlhooks.backends import StartRun

    backend = MlflowBackend(tracking_uri=hangup.uri)
    before = hangup.connections
    with pytest.raises(MlflowException):
        backend.apply(StartRun(RunInfo(run_id="r", name="r")))
    assert hangup.connections - before == 1


def test_reachable_says_whether_a_server_answers(
    mlflow_server: MlflowServer, hangup: Hangup, tmp_path: Path
) -> None:
    assert MlflowBackend(tracking_uri=mlflow_server.uri).reachable() is True
    closed = f"http://127.0.0.1:{free_port()}"
    assert MlflowBackend(tracking_uri=closed).reachable() is False
    assert MlflowBackend(tracking_uri=hangup.uri).reachable() is False
    assert MlflowBackend(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}").reachable() is None
    with pytest.raises(ConnectionError, match="does not answer"):
        MlflowBackend(tracking_uri=closed).check()


class SlowHealth:
    """A server on 127.0.0.1 that answers every request ``200 OK`` after ``delay``
    seconds: a tracking server whose ``/health`` is slow because it is busy."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            time.sleep(self.delay)
            body = b"OK"
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            with contextlib.suppress(OSError):
                connection.sendall(head.encode() + body)


def test_a_server_that_answered_slowly_lately_gets_longer_to_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy server (its /health slow, not gone) is not taken for down; one that stops
    answering at all is, within HEALTH_TIMEOUT_MAX. (How long mlhooks' own requests took
    counts too: the team-server tests and benchmark write through it.) The waits are
    mlhooks' own, halved; each delay leaves half a second's margin."""
    monkeypatch.setattr(connection, "HEALTH_TIMEOUT", 1.0)
    monkeypatch.setattr(connection, "HEALTH_TIMEOUT_FIRST", 2.5)
    monkeypatch.setattr(connection, "HEALTH_TIMEOUT_MAX", 4.0)
    server = SlowHealth()
    backend = MlflowBackend(tracking_uri=server.uri)
    assert health_timeout(server.uri) == 2.5  # never heard from
    assert backend.reachable() is True
    assert health_timeout(server.uri) < 2.5  # it answered (at once: 1 s)
    server.delay = 0.5
    assert backend.reachable() is True  # within the 1 s
    assert 1.5 <= health_timeout(server.uri) <= 4.0  # three times its answer, at least
    server.delay = 1.1  # slower still: taken for down at 1 s, had it not been slow before
    assert backend.reachable() is True
    server.delay = 60.0  # hangs
    started = time.monotonic()
    assert backend.reachable() is False
    assert time.monotonic() - started < 30  # within 4 s, on an idle machine
    server.socket.close()
