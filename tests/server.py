"""Run the real service in a child process on a loopback port, as users run it."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.images import encode, scene


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60.0) -> None:
        """Wait until the log holds `text` `count` times; AssertionError with the log after timeout seconds.

        A line written after the answer (the request log is written once the response is sent) may reach the
        file after the client has its answer.
        """
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} never logged {count} times:\n{self.log()}"
            time.sleep(0.02)

    def metric(self, line_prefix: str) -> float:
        """The sum of the /metrics samples whose line starts with line_prefix."""
        lines = httpx.get(self.url + "/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(line_prefix))

    def peak_rss_bytes(self) -> int:
        """The process's high-water mark of resident memory (VmHWM), in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) * 1024


@contextmanager
def running_server(weights: Path, log_dir: Path, command: list[str] | None = None, wait_ready=True,
                   starting: Callable[[Server], None] = lambda server: None, **settings):  # fmt: skip
    """Start `relight-serve` (or `command`, where "{port}" stands for the port) with RELIGHT_* settings.

    starting(server) is called once the process has started, before waiting for it to answer. The server is
    stopped with SIGTERM afterwards (SIGKILL if it is still up 30 s later).
    """
    port = free_port()
    env = {**os.environ, "RELIGHT_WEIGHTS": str(weights), "RELIGHT_PORT": str(port), "RELIGHT_WARMUP": "32x32",
           "RELIGHT_WARMUP_TILE": "false", "RELIGHT_COMPILE": "off"}  # fmt: skip
    env.update({f"RELIGHT_{key.upper()}": str(value) for key, value in settings.items()})
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command or [sys.executable, "-m", "service.serve"]],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        starting(server)
        wait_until(server, "/readyz" if wait_ready else "/healthz")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until(server: Server, path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{path} not 200 within {timeout} s:\n{server.log()}")


def send_then_leave(url: str, data: bytes, leave_when: Callable[[], bool]) -> None:
    """Upload over a raw socket and close it, unanswered, once leave_when() holds: a client that has gone."""
    request = httpx.Request("POST", url + "/relight", files={"image": ("upload.png", data)})
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    with socket.create_connection((request.url.host, request.url.port)) as sock:
        sock.sendall(f"POST /relight HTTP/1.1\r\n{head}\r\n".encode() + request.read())
        deadline = time.monotonic() + 60
        while not leave_when():
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)


def wait_for_metric(server: Server, line_prefix: str, value: float, timeout: float = 60.0) -> None:
    """Wait until Server.metric(line_prefix) equals value; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while server.metric(line_prefix) != value:
        assert time.monotonic() < deadline, f"{line_prefix} never reached {value}"
        time.sleep(0.02)


def leave_while_queued(server: Server, upload: bytes) -> None:
    """A client queued behind a 1024x1024 upload closes its socket: it is dropped, never computed.

    Needs a known-cost engine (tests/engines.py) slow enough that the blocker is still in the model when the
    second upload has been received, decoded and admitted: 10 s a megapixel leaves room on a loaded machine.
    """
    files = {"image": ("blocker.png", encode(scene(1024, 1024)))}
    batches_before = server.metric("relight_batch_size_count")
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(httpx.post, server.url + "/relight", files=files, timeout=60)
        # Running, not only queued: a small upload that reaches the batcher while it still gathers a batch may be
        # run first (it was, answered in 34 ms, and the queue never held two).
        wait_for_metric(server, "relight_batch_size_count", batches_before + 1)
        assert server.metric("relight_queue_depth") == 1
        send_then_leave(server.url, upload, leave_when=lambda: server.metric("relight_queue_depth") == 2)
        assert blocker.result().status_code == 200
    wait_for_metric(server, 'relight_dropped_total{reason="client_gone"}', 1, timeout=10)
    assert server.metric('relight_tiles_total{outcome="run"}') == 1  # the blocker's only
