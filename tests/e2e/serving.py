"""A real `jobforge serve` process, API keys made by the CLI, and a Server-Sent Events client
for the HTTP API end-to-end tests (test_serve, test_sse, test_api_schema)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.helpers import ROOT, cli_env, jobforge, ok, wait_until

SERVE_APP = "tests.apps.serve_app:app"
URL_LINE = re.compile(r"^jobforge API on (http://\S+) \(docs ", re.MULTILINE)
TOKEN = re.compile(r"^jf_([0-9a-f]{12})_[A-Za-z0-9_-]{20,100}$")


class ServerProcess:
    """`jobforge serve --port 0` in its own session; stdout and stderr go to files."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path, n: int) -> None:
        self.out_path, self.err_path = tmp_path / f"serve{n}.out", tmp_path / f"serve{n}.err"
        self._files = [open(self.out_path, "w"), open(self.err_path, "w")]  # noqa: SIM115
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobforge", "serve", "--port", "0", *args],
            stdout=self._files[0],
            stderr=self._files[1],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.url = ""

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def log(self) -> str:
        return self.err_path.read_text()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = 30) -> str:
        """The URL printed on stdout, once /health answers there."""
        found = wait_until(
            lambda: URL_LINE.search(self.stdout) or not self.alive(),
            timeout,
            f"server {self.pid} to print its URL",
        )
        assert self.alive(), f"server exited {self.popen.returncode}:\n{self.log}"
        assert isinstance(found, re.Match)
        self.url = found.group(1)
        wait_until(self._healthy, timeout, f"server {self.pid} to answer /health")
        return self.url

    def _healthy(self) -> bool:
        assert self.alive(), f"server exited {self.popen.returncode}:\n{self.log}"
        try:
            return httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def client(self, token: str | None = None, timeout: float = 15) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def send(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server {self.pid} still running after {timeout}s; log:\n{self.log}"
            ) from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole session if it is still there after 5 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError):  # children of a dead server too
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        for f in self._files:
            f.close()


class Servers:
    """Starts `jobforge serve` processes for one test and stops whatever is left at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[ServerProcess] = []

    def spawn(self, db_url: str, *args: str) -> ServerProcess:
        """Start a server without waiting for it."""
        proc = ServerProcess(
            ["--db", db_url, *args], cli_env(db_url), self.tmp_path, len(self.started) + 1
        )
        self.started.append(proc)
        return proc

    def start(self, db_url: str, *args: str) -> ServerProcess:
        """Start a server and wait until it answers."""
        proc = self.spawn(db_url, *args)
        proc.wait_ready()
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            proc.stop()


def create_key(db_url: str, tenant: str, permissions: str, *extra: str) -> tuple[str, str]:
    """(key id, token) of a new key, made by `jobforge apikey create --json`."""
    data = json.loads(
        ok(jobforge("apikey", "create", "--tenant", tenant, "--permissions", permissions,
                    "--json", *extra, db_url=db_url))
    )  # fmt: skip
    match = TOKEN.match(data["key"])
    assert match and match.group(1) == data["id"], data
    return data["id"], data["key"]


def free_port_taken() -> socket.socket:
    """A listening socket on 127.0.0.1 that holds a port the OS picked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# -- Server-Sent Events ------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict[str, Any]
    received: float  # time.monotonic() when the client read it

    @property
    def cursor(self) -> tuple[int, int]:
        txid, _, id_ = self.id.partition("-")
        return int(txid), int(id_)

    @property
    def object(self) -> str:
        """The job, workflow or run the event is about."""
        return str(self.data[{"job": "job_id", "run": "run_id"}.get(self.kind, "workflow_id")])


class EventStream:
    """GET /events read by a thread into a queue, so a test waits for events with deadlines
    and can hang up at any moment (the socket is shut down under the reading thread)."""

    def __init__(
        self, client: httpx.Client, last_event_id: str | None = None, **params: str
    ) -> None:
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self._cm = client.stream(
            "GET", "/events", params=params, headers=headers, timeout=httpx.Timeout(10, read=None)
        )
        self.response = self._cm.__enter__()
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.retry: int | None = None
        self.comments = 0  # keep-alive lines
        if self.response.status_code != 200:
            self.response.read()
            self._cm.__exit__(None, None, None)
            raise AssertionError(f"GET /events: {self.response.status_code} {self.response.text}")
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.comments += 1  # a keep-alive
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "retry" in fields:
                    self.retry = int(fields["retry"])
                if "data" in fields:
                    now = time.monotonic()
                    data = json.loads(fields["data"])
                    self.events.put(Event(fields["id"], fields["event"], data, now))
                fields = {}
        except (httpx.HTTPError, OSError, ValueError):
            pass  # closed under us
        finally:
            self.events.put(None)

    def next(self, timeout: float = 10) -> Event:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None
        assert event is not None, "the stream ended"
        return event

    def take(self, n: int, timeout: float = 15) -> list[Event]:
        """The next `n` events, all within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        return [self.next(max(0.0, deadline - time.monotonic())) for _ in range(n)]

    def until(self, last: Any, timeout: float = 15) -> list[Event]:
        """Events up to and including the first one for which `last(event)` is true."""
        deadline, got = time.monotonic() + timeout, []
        while True:
            try:
                got.append(self.next(max(0.0, deadline - time.monotonic())))
            except AssertionError as exc:
                raise AssertionError(f"{exc}; got {[e.data for e in got]}") from None
            if last(got[-1]):
                return got

    def quiet_for(self, seconds: float) -> None:
        """Assert that no event arrives for `seconds`."""
        try:
            event = self.events.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected event: {event}")

    def close(self) -> None:
        """Hang up (like a client that goes away), then let the reading thread finish."""
        stream = self.response.extensions.get("network_stream")
        sock = None if stream is None else stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the reading thread did not end"
        with contextlib.suppress(httpx.HTTPError, OSError):
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
