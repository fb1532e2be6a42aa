"""The production image, built from the project's Dockerfile and run: read-only root, its own user, healthy, drains.

Uses a running Docker engine, or starts one (root and Debian's docker.io needed); skips, saying
why, only when no engine can start. The base is made locally (debootstrap of Debian bookworm,
with Python) because no registry with base images can be reached here; the CPU flavour of the
image is built on it and left in the engine's store as relight:test.

The default, CUDA flavour (relight:test-cuda) is built only with RELIGHT_TEST_CUDA_IMAGE=1: it pulls
about 3 GB of CUDA wheels from PyPI and is 5.3 GB, minutes that CI's budget does not have. Without a
GPU it serves on the CPU, which is what the test checks, with the CUDA version docs/deploying.md states.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.images import decode, encode, scene
from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
BASE = "relight-base:bookworm"
IMAGE = "relight:test"
CUDA_IMAGE = "relight:test-cuda"
# The CUDA of PyPI's torch 2.13.0, as docs/deploying.md states it for `docker build -t relight .`.
DEFAULT_IMAGE_CUDA = "13.0"
# Request deadline, drain and client timeouts: a bound on a hang, not a measure of speed.
PATIENCE_S = 600
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
# Installing ca-certificates in an image rewrites /etc/ssl/certs; this path it leaves alone.
BASE_CA = "/usr/local/share/relight-build-ca/ca-certificates.crt"


def docker(*args, check=True, timeout=1800, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


def engine_answers() -> bool:
    try:
        return docker("info", check=False, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def start_engine(log_dir: Path) -> tuple[subprocess.Popen | None, str]:
    if engine_answers():
        return None, ""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        return None, "no Docker engine: install Debian's docker.io (.ci/run does)"
    if os.geteuid() != 0:
        return None, "no Docker engine running, and starting one needs root"
    for driver in ("overlay2", "vfs"):
        log = (log_dir / f"dockerd-{driver}.log").open("w")
        engine = subprocess.Popen(["dockerd", "--iptables=false", "--bridge=none", f"--storage-driver={driver}"],
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and engine.poll() is None:
            if engine_answers():
                return engine, ""
            time.sleep(1)
        engine.terminate()
        engine.wait(timeout=30)
    return None, f"dockerd did not start (logs in {log_dir})"


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def build_base(work: Path) -> None:
    """Debian bookworm with Python, and the host's CA bundle for pip (PIP_CERT), imported as BASE."""
    if docker("image", "inspect", BASE, check=False).returncode == 0:
        return
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is needed to make the local base image (.ci/run installs it)")
    root = work / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(root),
                    debian_mirror()], check=True, capture_output=True, timeout=900)  # fmt: skip
    (root / BASE_CA.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HOST_CA, root / BASE_CA.lstrip("/"))
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    docker("import", "--change", f"ENV PIP_CERT={BASE_CA}", "--change", 'CMD ["python3"]', "-", BASE, stdin=tar.stdout)
    tar.wait()


def local_torch_wheels() -> str | None:
    """The folder of pip's find-links that holds the CPU torch wheel, if this machine has one."""
    for folder in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split():
        if glob.glob(os.path.join(folder, "torch-2.13.0+cpu-*.whl")):
            return folder
    return None


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """A Docker engine with the local base image in its store; stopped afterwards if this module started it."""
    work = tmp_path_factory.mktemp("container")
    engine, why = start_engine(work)
    if why:
        pytest.skip(why)
    try:
        build_base(work)
        yield
    finally:
        if engine is not None:
            engine.terminate()
            engine.wait(timeout=60)


def build(tag: str, *args: str) -> None:
    built = docker("build", "--network", "host", "-t", tag, "--build-arg", f"BASE={BASE}", *args, str(ROOT),
                   check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    print(f"\n{tag}: {size / 1e6:,.0f} MB")


@pytest.fixture(scope="module")
def image(docker_engine):
    args = ["--build-arg", "FLAVOUR=cpu"]
    wheels, server = local_torch_wheels(), None
    if wheels:
        port = free_port()
        command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", wheels]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args += ["--build-arg", f"PIP_FIND_LINKS=http://127.0.0.1:{port}/", "--build-arg", "TORCH_CPU_INDEX="]
    try:
        build(IMAGE, *args)
    finally:
        if server:
            server.terminate()
    return IMAGE


@pytest.fixture(scope="module")
def cuda_image(request):
    if os.environ.get("RELIGHT_TEST_CUDA_IMAGE") != "1":
        pytest.skip("the CUDA flavour (5.3 GB, ~3 GB of wheels from PyPI) is built only with RELIGHT_TEST_CUDA_IMAGE=1")
    request.getfixturevalue("docker_engine")
    build(CUDA_IMAGE)
    return CUDA_IMAGE


@contextmanager
def serving(image: str, *options: str):
    """The image running read-only on a loopback port, once /readyz answers 200: (container name, URL).

    Deadlines and the drain are set far beyond what these uploads need on any CPU, busy or not: admission
    then accepts them wherever the machine's speed would put them, and a drain finishes them.
    """
    port = free_port()
    name = f"relight-test-{port}"
    docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "--health-interval", "2s", "-e", f"RELIGHT_PORT={port}", "-e", "RELIGHT_WARMUP=64x64",
           "-e", "RELIGHT_WARMUP_TILE=false", "-e", "RELIGHT_MAX_BATCH_SIZE=1",
           "-e", f"RELIGHT_REQUEST_TIMEOUT_S={PATIENCE_S}", "-e", f"RELIGHT_DRAIN_TIMEOUT_S={PATIENCE_S}",
           *options, image)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
            assert state["Running"] and time.monotonic() < deadline, docker("logs", name, check=False).stderr
            time.sleep(0.5)
        yield name, url
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(params=[1, 2], ids=["one process", "two workers"])
def container(request, image):
    with serving(image, "-e", f"RELIGHT_WORKERS={request.param}") as running:
        yield running


def test_the_image_serves_on_a_read_only_root_as_its_own_user_and_turns_healthy(container):
    name, url = container
    response = httpx.post(url + "/relight", files={"image": ("a.png", encode(scene(40, 56)))}, timeout=PATIENCE_S)
    assert response.status_code == 200
    assert decode(response.content).shape == (40, 56, 3)
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    # No C++ compiler in the image for Inductor: RELIGHT_COMPILE=auto leaves the forward eager there.
    info = httpx.get(url + "/info").json()
    assert info["settings"]["compile"] == "auto" and info["compiled_shapes"] == []
    deadline = time.monotonic() + 60
    while (health := docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(1)


def waiting_and_answered(url: str) -> tuple[float, float]:
    """(images waiting for the model, /relight requests answered 200) from the service's /metrics."""
    text = httpx.get(url + "/metrics").text
    waiting = re.search(r"^relight_queue_depth(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    answered = re.search(r'^relight_requests_total\{status="200"\} (\S+)$', text, re.MULTILINE)
    return float(waiting[1]) if waiting else 0.0, float(answered[1]) if answered else 0.0


def test_docker_stop_drains_accepted_requests_and_exits_0(container):
    name, url = container
    with ThreadPoolExecutor(3) as pool:
        # Big enough (about a second each on an idle CPU) that some still wait when all three are accepted.
        uploads = [pool.submit(httpx.post, url + "/relight", files={"image": ("a.png", encode(scene(768, 768, i)))},
                               timeout=PATIENCE_S) for i in range(3)]  # fmt: skip
        deadline = time.monotonic() + PATIENCE_S
        while True:
            waiting, answered = waiting_and_answered(url)
            if waiting >= 1 and waiting + answered >= 3:
                break
            early = [upload.result().status_code for upload in uploads if upload.done()]
            assert time.monotonic() < deadline and early == [200] * len(early), (waiting, answered, early)
            time.sleep(0.02)
        docker("stop", "--time", str(PATIENCE_S + 30), name)
        assert [upload.result().status_code for upload in uploads] == [200] * 3
    assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    assert "draining" in docker("logs", name).stderr


def test_the_image_holds_serving_code_and_weights_only(image):
    probe = "import importlib.util as u; print([u.find_spec(n) is not None for n in ('service', 'training', 'tests')])"
    found = docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", probe).stdout.strip()
    assert found == "[True, False, False]"
    listing = docker("run", "--rm", "--network", "none", "--entrypoint", "ls", image, "/app", "/app/weights").stdout
    assert "training" not in listing and "stacked_dmshn.safetensors" in listing


def test_the_default_cuda_image_serves_on_the_cpu_without_a_gpu_with_the_cuda_the_readme_states(cuda_image):
    probe = "import torch; print(torch.version.cuda, torch.cuda.is_available())"
    found = docker("run", "--rm", "--network", "none", "--entrypoint", "python", cuda_image, "-c", probe).stdout
    assert found.split() == [DEFAULT_IMAGE_CUDA, "False"]
    with serving(cuda_image) as (_, url):
        assert httpx.get(url + "/info").json()["device"] == "cpu"
        response = httpx.post(url + "/relight", files={"image": ("a.png", encode(scene(40, 56)))}, timeout=PATIENCE_S)
        assert response.status_code == 200
        assert decode(response.content).shape == (40, 56, 3)
