"""Swapping weights while serving (service.inference.weights_swap), through a real relight-serve on loopback.

Real weight files (the real Stacked DMSHN, two seeds), real uploads from several clients at once; the answers'
pixels are compared with each file's own output from an engine in this process.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
import torch

from model import DMSHN, StackedDMSHN
from model.weights import save_weights
from service.inference.engine import Engine
from service.settings import Settings
from tests.images import decode, encode, scene
from tests.server import free_port, running_server
from tests.weight_files import write_dtype_torch_lacks, write_nan_weights

SIDE = 48  # pixels: small uploads keep the load steady on two cores
CLIENTS = 4
INPUTS = [scene(SIDE, SIDE, seed) for seed in range(3)]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """live.safetensors and other.safetensors (the real network, seeds 0 and 1) and the files a swap must refuse."""
    folder = tmp_path_factory.mktemp("swap-weights")
    for seed, name in ((0, "live"), (1, "other")):
        torch.manual_seed(seed)
        save_weights(StackedDMSHN(), folder / f"{name}.safetensors", (-0.5, 0.5))
    data = (folder / "live.safetensors").read_bytes()
    (folder / "corrupt.safetensors").write_bytes(data[: len(data) // 2])
    torch.manual_seed(0)
    save_weights(DMSHN(), folder / "single.safetensors", (-0.5, 0.5))  # a valid file of another architecture
    write_nan_weights(folder / "nan.safetensors")
    write_dtype_torch_lacks(folder / "e8m0.safetensors", StackedDMSHN())
    return folder


@pytest.fixture(scope="module")
def expected(weights_dir) -> dict[str, list[np.ndarray]]:
    """{weights tag: each input's answer from that file alone}, computed as the service does (float32, eager)."""
    answers = {}
    for name in ("live", "other"):
        settings = Settings(weights=weights_dir / f"{name}.safetensors", device="cpu", dtype="float32", compile="off")
        engine = Engine(settings)
        answers[engine.weights_tag] = [engine.run(pixels[None]).images[0] for pixels in INPUTS]
    return answers


def swap(server, name: str | None) -> httpx.Response:
    return httpx.post(server.url + "/admin/reload", json={"weights": name} if name else None, timeout=120)


def live_tag(server) -> str:
    return httpx.get(server.url + "/readyz").json()["weights"]


def relight(server, index: int) -> httpx.Response:
    files = {"image": ("scene.png", encode(INPUTS[index]))}
    return httpx.post(server.url + "/relight", files=files, timeout=120)


def steady_load(server, stop: threading.Event, answers: list) -> None:
    """One client: uploads one input after another until stop is set; every answer is kept."""
    index = 0
    while not stop.is_set():
        response = relight(server, index % len(INPUTS))
        answers.append((index % len(INPUTS), response))
        index += 1


@pytest.mark.parametrize("unload_first", [False, True], ids=["beside", "unload_first"])
def test_swapping_under_load_and_back_answers_everything_with_the_weights_that_made_it(
    weights_dir, expected, tmp_path, unload_first
):
    settings = {"admin_reload": "true", "dtype": "float32", "warmup": f"{SIDE}x{SIDE}", "max_batch_size": 4,
                "swap_unload_first": str(unload_first).lower()}  # fmt: skip
    with running_server(weights_dir / "live.safetensors", tmp_path, **settings) as server:
        live, other = list(expected)
        assert live_tag(server) == live
        stop, answers = threading.Event(), []
        clients = [threading.Thread(target=steady_load, args=(server, stop, answers)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            time.sleep(1.0)
            swapped = swap(server, "other.safetensors")
            assert swapped.status_code == 200, swapped.text
            assert swapped.json()["weights"] == other and live_tag(server) == other
            time.sleep(1.0)
            back = swap(server, "live.safetensors")
            assert back.status_code == 200, back.text
            time.sleep(1.0)
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert live_tag(server) == live
        assert server.metric('relight_weights_swaps_total{outcome="done"}') == 2
        assert server.metric(f'relight_weights_info{{file="live.safetensors",sha256="{live[-12:]}"}}') == 1
        assert server.metric("relight_weights_info") == 1  # one series: the live weights'
    statuses = [response.status_code for _, response in answers]
    assert statuses.count(200) == len(statuses), f"answers other than 200: {sorted(set(statuses))}"
    made_by = [response.headers["Relight-Weights"] for _, response in answers]
    assert set(made_by) == {live, other}  # both weights answered while the load ran
    for index, response in answers:
        answer, own = decode(response.content), expected[response.headers["Relight-Weights"]][index]
        assert np.abs(answer.astype(int) - own).max() <= 1, "an answer differs from its weights' own output"
    # The two files' answers are far apart, so the pixel check above tells them apart.
    assert np.abs(expected[live][0].astype(int) - expected[other][0]).mean() > 5


def test_a_bad_file_is_refused_the_old_weights_keep_serving_and_the_refusal_is_counted(weights_dir, expected, tmp_path):
    live = next(iter(expected))
    refusals = {
        "corrupt.safetensors": "not a readable safetensors file",
        "single.safetensors": "holds DMSHN, the live weights are StackedDMSHN",
        "missing.safetensors": "no such file",
        "nan.safetensors": "not finite",
        "e8m0.safetensors": "dtype F8_E8M0, which torch cannot hold",
        "../live.safetensors": "not a file name",
        "x\n2026-12-03 07:00:00,000 INFO relight: weights swapped: forged": "not a file name",
    }
    with running_server(weights_dir / "live.safetensors", tmp_path, admin_reload="true") as server:
        for name, reason in refusals.items():
            response = swap(server, name)
            assert response.status_code == 422 and reason in response.json()["detail"], response.text
            assert live_tag(server) == live
            answer = relight(server, 0)
            assert answer.status_code == 200 and answer.headers["Relight-Weights"] == live
        assert server.metric('relight_weights_swaps_total{outcome="refused"}') == len(refusals)
        assert server.metric('relight_weights_swaps_total{outcome="done"}') == 0
        assert "weights swap refused" in server.log() and "\n2026-12-03 07:00:00" not in server.log()
        unchanged = swap(server, None)  # RELIGHT_WEIGHTS again, the same bytes: nothing to do
        assert unchanged.status_code == 200 and unchanged.json()["weights"] == live
        assert server.metric('relight_weights_swaps_total{outcome="done"}') == 0


def test_the_admin_endpoint_is_absent_by_default_and_needs_the_api_key(weights_dir, tmp_path):
    with running_server(weights_dir / "live.safetensors", tmp_path) as server:
        assert swap(server, "other.safetensors").status_code == 404
    with running_server(weights_dir / "live.safetensors", tmp_path, admin_reload="true", api_key="k") as server:
        assert swap(server, "other.safetensors").status_code == 401
        response = httpx.post(server.url + "/admin/reload", headers={"X-API-Key": "k"}, timeout=120)
        assert response.status_code == 200


def wait_for_weights(server, tag: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while live_tag(server) != tag:
        assert time.monotonic() < deadline, f"the live weights never became {tag}:\n{server.log()}"
        time.sleep(0.1)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_swaps_to_the_file_now_at_relight_weights(weights_dir, expected, tmp_path, workers):
    """Signalled as an operator does, through RELIGHT_PID_FILE (docs/operating.md), which names relight-serve itself
    (with workers: the supervisor) and is gone once it has stopped."""
    live, other = list(expected)
    served, pid_file = tmp_path / "served.safetensors", tmp_path / "relight.pid"
    shutil.copy(weights_dir / "live.safetensors", served)
    with running_server(served, tmp_path, dtype="float32", workers=workers, pid_file=pid_file) as server:
        pid = int(pid_file.read_text())
        assert pid == server.process.pid
        assert live_tag(server).endswith(live.split()[1])
        # A FIFO at the path (no writer ever comes) is refused, not waited on; so is a file cut short.
        for refused, bad in enumerate(("fifo", "corrupt"), start=1):
            if bad == "fifo":
                os.mkfifo(tmp_path / "incoming")
            else:
                shutil.copy(weights_dir / "corrupt.safetensors", tmp_path / "incoming")
            os.replace(tmp_path / "incoming", served)
            os.kill(pid, signal.SIGHUP)
            deadline = time.monotonic() + 60
            while server.metric('relight_weights_swaps_total{outcome="refused"}') != refused:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            assert live_tag(server) == f"served.safetensors {live.split()[1]}"
        assert "not a regular file" in server.log()
        shutil.copy(weights_dir / "other.safetensors", tmp_path / "incoming")
        os.replace(tmp_path / "incoming", served)  # as a volume or ConfigMap update does: a new file, renamed in
        os.kill(pid, signal.SIGHUP)
        wait_for_weights(server, f"served.safetensors {other.split()[1]}")
        response = relight(server, 1)
        assert response.status_code == 200
        assert response.headers["Relight-Weights"] == f"served.safetensors {other.split()[1]}"
        assert np.abs(decode(response.content).astype(int) - expected[other][1]).max() <= 1
        assert server.process.poll() is None
    assert server.process.returncode == 0
    assert not pid_file.exists()


def test_any_file_name_is_named_in_every_answer_percent_encoded(weights_dir, expected, tmp_path):
    """A header holds printable ASCII (latin-1 at most): a file name outside it is percent-encoded in the tag (the
    header's, /readyz's, the endpoint's), and every answer is still made (not a 500 for each upload once such a
    file serves)."""
    live, other = list(expected)
    names = {live: "relight ünï.safetensors", other: "模型 100%.safetensors"}
    for tag, name in names.items():
        shutil.copy(weights_dir / tag.split()[0], tmp_path / name)
    with running_server(tmp_path / names[live], tmp_path, dtype="float32", admin_reload="true") as server:
        assert swap(server, names[other]).status_code == 200
        response = relight(server, 2)
        assert response.status_code == 200, response.text
        made_by = response.headers["Relight-Weights"]
        assert made_by == live_tag(server) == f"%E6%A8%A1%E5%9E%8B 100%25.safetensors {other.split()[1]}"
        assert unquote(made_by.rsplit(" ", 1)[0]) == names[other]
        assert np.abs(decode(response.content).astype(int) - expected[other][2]).max() <= 1
        assert swap(server, names[live]).json()["weights"] == f"relight %C3%BCn%C3%AF.safetensors {live.split()[1]}"


# A forward pass of known cost (tests/engines.py): a swap's warm-up (two 256x256 passes) takes 8 s whatever the CPU,
# so a signal sent once the swap has read its file arrives while the swap is still running.
PACED = {"command": [sys.executable, "-m", "tests.engines"], "test_seconds_per_megapixel": 60}


def roll(weights_dir: Path, name: str, served: Path) -> None:
    """Put a copy of `name` at `served` as an operator does: renamed over it."""
    shutil.copy(weights_dir / name, served.with_name("incoming"))
    os.replace(served.with_name("incoming"), served)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sighup_during_a_swap_swaps_again_to_the_file_then_at_relight_weights(weights_dir, tmp_path, workers):
    """The second SIGHUP came after the first swap had read its file: the file it names is the one that serves."""
    served = tmp_path / "served.safetensors"
    shutil.copy(weights_dir / "live.safetensors", served)
    torch.manual_seed(2)
    save_weights(StackedDMSHN(), tmp_path / "third.safetensors", (-0.5, 0.5))
    third = hashlib.sha256((tmp_path / "third.safetensors").read_bytes()).hexdigest()[:12]
    with running_server(served, tmp_path, workers=workers, **PACED) as server:
        roll(weights_dir, "other.safetensors", served)
        os.kill(server.process.pid, signal.SIGHUP)
        server.wait_for_log("loaded StackedDMSHN", 2)  # the swap has read other.safetensors and warms it up
        roll(tmp_path, "third.safetensors", served)
        for _ in range(3):
            os.kill(server.process.pid, signal.SIGHUP)
            time.sleep(0.1)
        wait_for_weights(server, f"served.safetensors sha256:{third}")
        assert server.metric('relight_weights_swaps_total{outcome="done"}') == 2
        assert server.metric('relight_weights_swaps_total{outcome="refused"}') == 0
        response = relight(server, 0)
        assert response.status_code == 200 and response.headers["Relight-Weights"] == live_tag(server)


def test_a_sighup_while_the_model_process_loads_does_not_end_relight_serve(weights_dir, expected, tmp_path):
    def hang_up_early(server) -> None:
        server.wait_for_log("HTTP workers and a model process")  # the model process is only being spawned
        os.kill(server.process.pid, signal.SIGHUP)

    with running_server(weights_dir / "live.safetensors", tmp_path, workers=2, starting=hang_up_early) as server:
        server.wait_for_log("SIGHUP: swapping to the weight file at RELIGHT_WEIGHTS")  # kept, then acted on
        assert live_tag(server) == next(iter(expected))
        assert relight(server, 0).status_code == 200
        assert server.metric("relight_weights_swaps_total") == 0  # the same bytes: nothing to swap


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_a_swap_answers_every_request_and_exits_0_without_finishing_the_swap(
    weights_dir, tmp_path, workers
):
    served = tmp_path / "served.safetensors"
    shutil.copy(weights_dir / "live.safetensors", served)
    with running_server(served, tmp_path, workers=workers, **PACED) as server:
        roll(weights_dir, "other.safetensors", served)
        os.kill(server.process.pid, signal.SIGHUP)
        server.wait_for_log("loaded StackedDMSHN", 2)
        warmed = server.log().count("throughput")  # the live weights' warm-up
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [pool.submit(relight, server, index % len(INPUTS)) for index in range(CLIENTS)]
            while server.metric("relight_queue_depth") == 0 and not answers[0].done():
                time.sleep(0.01)
            server.process.terminate()
            statuses = [answer.result().status_code for answer in answers]
        assert server.process.wait(timeout=60) == 0
    assert 200 in statuses and set(statuses) <= {200, 503}  # accepted: answered; after the signal: refused
    log = server.log()
    assert log.count("throughput") == warmed and "weights swapped" not in log  # it exited before the swap warmed
    assert "stopped during a weights swap" in log


def test_a_reload_asked_for_during_another_is_a_409_and_the_first_goes_on(weights_dir, expected, tmp_path):
    other = list(expected)[1]
    with running_server(weights_dir / "live.safetensors", tmp_path, admin_reload="true", **PACED) as server:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(swap, server, "other.safetensors")
            server.wait_for_log("loaded StackedDMSHN", 2)
            second = swap(server, "live.safetensors")
            assert second.status_code == 409 and "in progress" in second.json()["detail"], second.text
            assert first.result().status_code == 200
        assert live_tag(server) == other
        assert server.metric('relight_weights_swaps_total{outcome="refused"}') == 0  # nothing was wrong with a file


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_a_swap_refuses_does_not_start_the_service_either(weights_dir, workers):
    """The same output check at startup: weights of NaNs would otherwise serve black images and report ready."""
    env = {**os.environ, "RELIGHT_WEIGHTS": str(weights_dir / "nan.safetensors"), "RELIGHT_PORT": str(free_port()),
           "RELIGHT_WORKERS": str(workers), "RELIGHT_COMPILE": "off", "RELIGHT_WARMUP": "32x32"}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "service.serve"], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert "cannot start" in result.stderr and "not finite" in result.stderr
