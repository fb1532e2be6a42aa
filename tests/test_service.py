"""The real service on loopback: real uvicorn, real image bytes, the real Stacked DMSHN."""

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.settings import Settings
from tests.engines import POISON, SLOW
from tests.images import decode, encode, png_with_header, scene
from tests.server import free_port, running_server, wait_for_metric, wait_until


def post(url, data: bytes, filename="scene.png", params=None, headers=None, timeout=60.0):
    return httpx.post(url + "/relight", files={"image": (filename, data)}, params=params, headers=headers,
                      timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module", params=[1, 2], ids=["one process", "two workers"])
def server(request, weights_file, tmp_path_factory):
    """float32 so that a batched image can be compared with the same image alone; the same tests run on
    relight-serve as one process and with two HTTP workers and a model process (RELIGHT_WORKERS=2)."""
    with running_server(
        weights_file, tmp_path_factory.mktemp("logs"), dtype="float32", max_wait_ms=300, max_batch_size=8,
        max_upload_bytes=300_000, max_pixels=512 * 512, workers=request.param,
    ) as running:  # fmt: skip
        yield running


def test_png_and_jpeg_come_back_relit_at_the_same_size(server):
    for pixels, data, name, media_type in [
        (scene(37, 53), encode(scene(37, 53)), "a.png", "image/png"),
        (scene(64, 48, 1), encode(scene(64, 48, 1), "JPEG", quality=95), "b.jpg", "image/jpeg"),
    ]:
        response = post(server.url, data, name, headers={"X-Request-ID": "client-id-1"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type  # the upload's own format by default
        assert response.headers["x-request-id"] == "client-id-1"
        for stage in ("decode", "queue", "inference", "encode"):
            assert f"{stage};dur=" in response.headers["server-timing"]
        out = decode(response.content)
        assert out.shape == pixels.shape
        assert np.abs(out.astype(int) - pixels.astype(int)).mean() > 1  # it was relit, not echoed


def test_format_from_query_or_accept_header(server):
    data = encode(scene(32, 32))
    assert post(server.url, data, params={"format": "jpeg"}).headers["content-type"] == "image/jpeg"
    assert post(server.url, data, headers={"Accept": "image/webp"}).headers["content-type"] == "image/webp"
    assert decode(post(server.url, data, params={"format": "webp"}).content).shape == (32, 32, 3)
    assert len(post(server.url, data).headers["x-request-id"]) == 32


def test_alpha_is_carried_over(server):
    rgba = np.dstack([scene(20, 30), np.linspace(0, 255, 600).reshape(20, 30).astype(np.uint8)])
    out = decode(post(server.url, encode(rgba)).content)
    assert out.shape == (20, 30, 4)
    assert np.array_equal(out[..., 3], rgba[..., 3])


def test_concurrent_uploads_are_batched_and_each_gets_its_own_image(server):
    images = [scene(48, 64, seed) for seed in range(6)]
    alone = [decode(post(server.url, encode(image)).content) for image in images[:2]]
    batches_before = server.metric("relight_batch_size_count")
    images_before = server.metric("relight_batch_size_sum")
    barrier = threading.Barrier(len(images))

    def upload(image):
        barrier.wait()
        return post(server.url, encode(image))

    with ThreadPoolExecutor(len(images)) as pool:
        responses = list(pool.map(upload, images))
    assert [r.status_code for r in responses] == [200] * len(images)
    batches = server.metric("relight_batch_size_count") - batches_before
    relit = server.metric("relight_batch_size_sum") - images_before
    assert relit == len(images)
    assert batches < len(images)  # at least one forward pass held several images
    assert any(int(r.headers["x-batch-size"]) > 1 for r in responses)
    outputs = [decode(r.content) for r in responses]
    for i in range(2):
        assert np.abs(outputs[i].astype(int) - alone[i].astype(int)).max() <= 1
    assert not np.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("make_request", "status", "words"),
    [
        (lambda url: post(url, encode(scene(40, 40))[:200]), 400, "broken"),
        (lambda url: post(url, b""), 400, "empty"),
        (lambda url: post(url, png_with_header(100_000, 100_000)), 413, "100000x100000"),
        (lambda url: post(url, b"\0" * 400_000), 413, "larger than"),
        (lambda url: post(url, b"<html>not an image</html>", "x.png"), 415, "not an image"),
        (lambda url: httpx.post(url + "/relight", content=b"{}", headers={"content-type": "application/json"}), 415,
         "multipart"),
        (lambda url: httpx.post(url + "/relight", files={"picture": ("a.png", encode(scene(8, 8)))}), 422,
         "missing"),
        (lambda url: httpx.post(url + "/relight", files=[("image", ("a.png", encode(scene(8, 8)))),
                                                           ("image", ("b.png", encode(scene(8, 8))))]), 422,
         "exactly one"),
        (lambda url: post(url, encode(scene(8, 8)), params={"format": "tiff"}), 422, "query.format"),
    ],
)  # fmt: skip
def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(server, make_request, status, words):
    response = make_request(server.url)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert post(server.url, encode(scene(16, 16))).status_code == 200


def test_metrics_expose_every_stage_and_the_model(server):
    post(server.url, encode(scene(16, 16)))
    text = httpx.get(server.url + "/metrics").text
    for stage in ("decode", "queue", "inference", "encode"):
        assert f'relight_stage_duration_seconds_count{{stage="{stage}"}}' in text
    assert 'relight_requests_total{status="200"}' in text
    assert 'relight_request_duration_seconds_bucket{le="0.005",status="200"}' in text
    assert 'relight_batch_size_bucket{le="8.0"}' in text
    assert "relight_queue_depth 0.0" in text
    assert 'relight_model_info{device="cpu",dtype="float32",weights_sha256="' in text
    assert "process_resident_memory_bytes" in text


def test_info_and_health(server):
    info = httpx.get(server.url + "/").json()
    assert info["model"]["architecture"] == "StackedDMSHN"
    assert info["settings"]["max_batch_size"] == 8
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    docs = httpx.get(server.url + "/openapi.json").json()
    assert {"400", "413", "415", "422", "503", "504"} <= set(docs["paths"]["/relight"]["post"]["responses"])


@pytest.fixture(scope="module")
def faulty_server(weights_file, tmp_path_factory):
    """A known-cost engine (1 ms for 32x32) that fails on batches holding an all-13 image (tests/engines.py)."""
    with running_server(
        weights_file, tmp_path_factory.mktemp("logs"), command=[sys.executable, "-m", "tests.engines"],
        max_wait_ms=0, max_queue=2, max_batch_size=1, request_timeout_s=2, test_seconds_per_megapixel=1,
    ) as running:  # fmt: skip
        yield running


def test_a_failing_batch_answers_its_request_and_the_next_batch_runs(faulty_server):
    poisoned = np.full((24, 24, 3), POISON, np.uint8)
    response = post(faulty_server.url, encode(poisoned))
    assert response.status_code == 500
    assert "model failed" in response.json()["detail"]
    assert "Traceback" not in response.text
    assert post(faulty_server.url, encode(scene(24, 24))).status_code == 200


def test_full_queue_answers_503_and_a_late_answer_504(faulty_server):
    slow = encode(np.full((24, 24, 3), SLOW, np.uint8))

    def upload(i):
        time.sleep(0.05 * i)
        return post(faulty_server.url, slow if i == 0 else encode(scene(32, 32, i)))

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(upload, range(6)))
    statuses = [r.status_code for r in responses]
    assert statuses[0] == 504, statuses  # admitted on its size, then 3 s in the model against a 2 s deadline
    assert 503 in statuses
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert "queue is full" in response.json()["detail"]
    assert set(statuses) <= {200, 503, 504}
    assert faulty_server.metric('relight_dropped_total{reason="deadline"}') >= 1
    # Once the large image's forward pass ends, the service answers normally again.
    deadline = time.monotonic() + 60
    while (status := post(faulty_server.url, encode(scene(32, 32))).status_code) != 200:
        assert status in (503, 504) and time.monotonic() < deadline


@pytest.mark.parametrize("workers", [1, 2])
def test_startup_readiness_and_sigterm_drain(weights_file, tmp_path, workers):
    """503 while warming up; on SIGTERM every accepted request is answered, new ones get 503, exit code 0."""
    with running_server(
        weights_file, tmp_path, wait_ready=False, warmup="1024x1024", max_batch_size=1, max_wait_ms=0, workers=workers
    ) as server:  # fmt: skip
        starting = httpx.get(server.url + "/readyz")
        assert starting.status_code == 503
        early = post(server.url, encode(scene(16, 16)))
        assert early.status_code == 503 and "warming up" in early.json()["detail"]
        wait_until(server, "/readyz")

        with ThreadPoolExecutor(4) as pool:
            accepted = [pool.submit(post, server.url, encode(scene(512, 512, i))) for i in range(4)]
            deadline = time.monotonic() + 30
            # All four accepted (one in the model, three waiting) before the signal.
            while server.metric("relight_queue_depth") < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            try:
                refused = post(server.url, encode(scene(16, 16)), timeout=10)
                assert refused.status_code == 503
            except httpx.TransportError:
                pass  # the drain finished first and the socket closed: refused as well
            assert [f.result().status_code for f in accepted] == [200] * 4
        assert server.process.wait(timeout=60) == 0
    assert "draining" in server.log()
    assert server.log().count("every accepted request was answered") == workers


@pytest.mark.parametrize(
    "command",
    [["-m", "tests.engines"], ["-m", "uvicorn", "--factory", "tests.engines:seamed_app", "--port", "{port}"]],
    ids=["relight-serve", "uvicorn"],
)
def test_sigterm_during_warm_up_ends_the_process_at_once(weights_file, tmp_path, command):
    """Nothing is accepted while warming up: a signal ends the process, not the ten-minute pass under way. That exit
    skips Python's clean-up, not the pid file's removal (relight-serve's; plain uvicorn writes none)."""
    pid_file = tmp_path / "relight.pid"
    with running_server(
        weights_file, tmp_path, command=[sys.executable, *command], wait_ready=False, warmup="1024x1024",
        test_seconds_per_megapixel=600, pid_file=pid_file,
    ) as server:  # fmt: skip
        assert httpx.get(server.url + "/readyz").status_code == 503
        assert pid_file.exists() == (command[1] == "tests.engines")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    assert "stopped during warm-up" in server.log()
    assert not pid_file.exists()


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(("workers", "stop"), [(1, signal.SIGTERM), (1, signal.SIGINT), (2, signal.SIGTERM),
                                               (2, signal.SIGINT)])  # fmt: skip
def test_a_signal_while_the_weights_load_ends_every_process_at_once(weights_file, tmp_path, workers, stop):
    """With workers, a SIGTERM then left the model process running without its parent; Ctrl-C gave tracebacks and
    waited for the model's warm-up. Ctrl-C is sent as a terminal does, to the whole process group. The server starts
    with SIGINT ignored, as a shell's `&` job does: alone, it then slept through Ctrl-C while it loaded."""
    env = {**os.environ, "RELIGHT_WEIGHTS": str(weights_file), "RELIGHT_PORT": str(free_port()),
           "RELIGHT_WORKERS": str(workers), "RELIGHT_TEST_LOAD_SECONDS": "120"}  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(["setsid", sys.executable, "-m", "tests.engines"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT, preexec_fn=ignore_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "test engine: loading the weights" not in log.read_text():
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.1)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert bool(children) == (workers > 1)  # the model process, loading
        if stop == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # Where it stands (tests.engines' dump): how CI showed a server sleeping through an ignored Ctrl-C.
            process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            pytest.fail(f"still running 20 s after {stop.name}; its log and threads:\n{log.read_text()}")
        assert status == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # The model process has gone before relight-serve exits; multiprocessing's resource tracker a moment after it.
    deadline = time.monotonic() + 10
    while (left := [child for child in children if Path(f"/proc/{child}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes {left} outlived relight-serve"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_signal_exits_at_once_leaving_the_accepted_request(weights_file, tmp_path, workers):
    """Ctrl-C twice: the first drains, waiting for the image the model is on (a 40 s pass here); the second ends
    the process by its signal, the model process too, and the client's connection closes unanswered."""
    pid_file = tmp_path / "relight.pid"
    with running_server(
        weights_file, tmp_path, command=[sys.executable, "-m", "tests.engines"], max_wait_ms=0, workers=workers,
        test_seconds_per_megapixel=40, pid_file=pid_file,
    ) as server:  # fmt: skip
        assert int(pid_file.read_text()) == server.process.pid
        batches_before = server.metric("relight_batch_size_count")
        with ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(post, server.url, encode(scene(1024, 1024)), timeout=120)
            wait_for_metric(server, "relight_batch_size_count", batches_before + 1)
            server.process.send_signal(signal.SIGINT)
            time.sleep(1)
            assert server.process.poll() is None, "the first signal drains: the accepted image is still running"
            started = time.monotonic()
            server.process.send_signal(signal.SIGINT)
            assert server.process.wait(timeout=20) in (130, -signal.SIGINT)
            assert time.monotonic() - started < 20
            with pytest.raises(httpx.TransportError):
                accepted.result()
    assert "again: exiting without waiting for 1 accepted requests" in server.log()
    assert "Traceback" not in server.log()
    assert not pid_file.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("problem", ["unwritable", "running"])
def test_a_pid_file_that_cannot_be_ours_stops_startup_with_one_line(tmp_path, workers, problem):
    """A folder that is not there; or the file of a server still running (here this test's process), which a second
    server given the same file must not take over: its operator would signal the wrong one."""
    pid_file = tmp_path / ("no-such-folder" if problem == "unwritable" else "") / "relight.pid"
    if problem == "running":
        pid_file.write_text(f"{os.getpid()}\n")
    result = subprocess.run([sys.executable, "-m", "service.serve"], env={"RELIGHT_PID_FILE": str(pid_file),
                            "RELIGHT_WORKERS": workers, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("relight: cannot start: RELIGHT_PID_FILE")
    assert {"unwritable": str(pid_file.parent), "running": f"names process {os.getpid()}, which is running"}[
        problem
    ] in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == (["relight.pid"] if problem == "running" else [])


@pytest.mark.fast
def test_an_empty_pid_file_setting_is_no_pid_file():
    """An env file's `RELIGHT_PID_FILE=` leaves it unset; as a path it was the current folder, and startup failed."""
    assert Settings(pid_file="").pid_file is None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_weights_stop_startup_with_one_line(tmp_path, workers):
    for bad in (tmp_path / "missing.safetensors", tmp_path / "junk.safetensors"):
        if bad.name.startswith("junk"):
            bad.write_bytes(b"junk" * 100)
        result = subprocess.run([sys.executable, "-m", "service.serve"], env={"RELIGHT_WEIGHTS": str(bad),
                                "RELIGHT_WORKERS": workers, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("relight: cannot start:")
        assert str(bad) in lines[-1]
