"""relight-serve with RELIGHT_WORKERS=2: two HTTP workers, and the model with its one queue in a third process."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.batching.handle import NoSharedMemory
from service.http.routes import not_queued
from service.http.state import ServiceState
from service.metrics import RequestMetrics
from service.settings import Settings
from service.tracing import NoTracing
from service.workers.remote_model import RemoteModel
from tests.images import encode, scene
from tests.server import leave_while_queued, running_server, wait_until


def post(url, data: bytes, filename="scene.png", timeout=60.0, **kwargs):
    return httpx.post(url + "/relight", files={"image": (filename, data)}, timeout=timeout, **kwargs)


# The model process's forward pass at a known cost (tests/engines.py): 10 s for a 1024x1024 upload on any CPU,
# room for the next upload to be admitted behind it on a loaded machine.
PACED = {"command": [sys.executable, "-m", "tests.engines"], "test_seconds_per_megapixel": 10}


def processes(server, workers: int = 2) -> tuple[int, set[int]]:
    """The model process and the HTTP workers of relight-serve, once `workers` of them have started."""
    deadline = time.monotonic() + 60
    while True:
        command = ["pgrep", "-P", str(server.process.pid), "-f", "spawn_main"]
        spawned = {int(line) for line in subprocess.run(command, capture_output=True, text=True).stdout.split()}
        started = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", server.log())} & spawned
        if len(started) == workers and len(spawned) == workers + 1:
            return (spawned - started).pop(), started
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


def shared_dir(log: str) -> Path:
    return Path(re.search(r"images pass through (\S+)", log).group(1))


@pytest.fixture(scope="module")
def servers(weights_file, tmp_path_factory):
    """The same settings in one process and in two workers; float32, so answers compare bit for bit."""
    logs = tmp_path_factory.mktemp("logs")
    settings = {"dtype": "float32", "tile_size": 128, "tile_overlap": 16, "max_batch_pixels": 128 * 128 * 8}
    with (
        running_server(weights_file, logs, **settings) as single,
        running_server(weights_file, logs, workers=2, **settings) as split,
    ):
        yield single, split


def test_two_workers_answer_exactly_what_one_process_answers(servers):
    single, split = servers
    uploads = [
        (encode(scene(40, 56)), "a.png", {}),
        (encode(scene(64, 48, 1), "JPEG", quality=92), "b.jpg", {}),
        (encode(np.dstack([scene(30, 20, 2), np.full((30, 20), 77, np.uint8)])), "c.png", {}),
        (encode(scene(200, 300, 3)), "tiled.png", {"params": {"format": "webp"}}),
    ]
    for data, name, options in uploads:
        one, two = post(single.url, data, name, **options), post(split.url, data, name, **options)
        assert one.status_code == two.status_code == 200, two.text
        assert one.headers["content-type"] == two.headers["content-type"]
        assert one.content == two.content, name
    assert split.metric('relight_tiles_total{outcome="run"}') >= 6  # the 200x300 upload ran as 6 tiles


def test_the_workers_share_one_queue_and_their_metrics_add_up(servers):
    _, split = servers
    assert len(processes(split)[1]) == 2
    requests = split.metric('relight_requests_total{status="200"}')
    batches, relit = split.metric("relight_batch_size_count"), split.metric("relight_batch_size_sum")
    images = [scene(48, 64, seed) for seed in range(12)]
    with ThreadPoolExecutor(len(images)) as pool:
        responses = list(pool.map(lambda image: post(split.url, encode(image)), images))
    assert [r.status_code for r in responses] == [200] * len(images)
    assert split.metric('relight_requests_total{status="200"}') - requests == len(images)
    assert split.metric("relight_batch_size_sum") - relit == len(images)
    assert split.metric("relight_batch_size_count") - batches < len(images)  # batched across connections
    buffers = set(shared_dir(split.log()).iterdir())
    assert all(post(split.url, encode(image)).status_code == 200 for image in images[:4])
    assert set(shared_dir(split.log()).iterdir()) == buffers  # the shared buffers are reused, not made anew
    for path in ("/healthz", "/readyz", "/info"):
        assert httpx.get(split.url + path).status_code == 200
    assert httpx.get(split.url + "/info").json()["settings"]["workers"] == 2


def test_a_second_service_on_the_same_port_does_not_start(servers):
    _, split = servers
    env = {**os.environ, "RELIGHT_WORKERS": "2", "RELIGHT_PORT": split.url.rsplit(":", 1)[1], "RELIGHT_WARMUP": "",
           "RELIGHT_WARMUP_TILE": "false", "RELIGHT_COMPILE": "off"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "service.serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("relight: cannot start: cannot listen on")


def test_a_client_that_leaves_is_dropped_from_the_model_process_queue(weights_file, tmp_path):
    """Queued behind a 1024x1024 upload that takes 10 s (a known-cost forward pass), the client closes its socket."""
    with running_server(weights_file, tmp_path, workers=2, **PACED) as split:
        leave_while_queued(split, encode(scene(24, 36)))


def test_a_full_queue_is_answered_503_from_the_model_process(weights_file, tmp_path):
    with running_server(weights_file, tmp_path, workers=2, max_queue=1, **PACED) as server:
        with ThreadPoolExecutor(1) as pool:
            blocker = pool.submit(post, server.url, encode(scene(1024, 1024)))
            deadline = time.monotonic() + 30
            while server.metric("relight_queue_depth") < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = post(server.url, encode(scene(24, 36)))
            assert refused.status_code == 503, refused.text
            assert "queue is full" in refused.json()["detail"] and int(refused.headers["retry-after"]) >= 1
            assert blocker.result().status_code == 200
        assert server.metric('relight_admissions_refused_total{reason="queue_full"}') == 1
        assert post(server.url, encode(scene(24, 36))).status_code == 200


def test_a_dead_worker_is_replaced(weights_file, tmp_path):
    with running_server(weights_file, tmp_path, workers=2) as server:
        _, workers = processes(server)
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "starting another" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_until(server, "/readyz")
        assert all(post(server.url, encode(scene(16, 16, i))).status_code == 200 for i in range(4))
        assert len(processes(server)[1]) == 2  # the replacement has started


def test_a_sighup_that_reaches_a_child_process_ends_nothing(weights_file, tmp_path):
    """`systemctl kill -s HUP` signals every process of the unit: only relight-serve acts on it (a weights swap); the
    model process and the HTTP workers ignore it, and go on answering."""
    with running_server(weights_file, tmp_path, workers=2) as server:
        model, workers = processes(server)
        for pid in (model, *workers):
            os.kill(pid, signal.SIGHUP)
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "weights unchanged" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert all(post(server.url, encode(scene(16, 16, i))).status_code == 200 for i in range(4))
        assert processes(server) == (model, workers)
        assert "exited" not in server.log()


def test_when_the_model_process_dies_the_service_exits_1(weights_file, tmp_path):
    with running_server(weights_file, tmp_path, workers=2) as server:
        os.kill(processes(server)[0], signal.SIGKILL)
        assert server.process.wait(timeout=60) == 1
    assert "the model process exited" in server.log()
    assert not shared_dir(server.log()).exists()


@pytest.mark.fast
def test_no_room_in_shared_memory_is_a_503_that_names_it(tmp_path):
    """Where the tmpfs cannot take an image's buffer (here its folder is gone; in a container, a full /dev/shm),
    the upload is refused as a full queue is, in its own words and under its own metric reason."""
    model = RemoteModel(tmp_path / "model.sock", tmp_path / "removed", on_lost=lambda: None)
    with pytest.raises(NoSharedMemory):
        asyncio.run(model.submit(np.zeros((16, 16, 3), np.uint8), time.monotonic() + 10))
    registry = CollectorRegistry()
    state = ServiceState(Settings(), model, RequestMetrics(registry), registry, NoTracing())
    refusal = not_queued(state, NoSharedMemory())
    assert refusal.status_code == 503 and refusal.headers["Retry-After"] == "1"
    assert "no shared memory is left" in refusal.detail
    assert registry.get_sample_value("relight_admissions_refused_total", {"reason": "shared_memory"}) == 1
    assert registry.get_sample_value("relight_admissions_refused_total", {"reason": "queue_full"}) == 0
