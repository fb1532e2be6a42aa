"""Deployment files, checked offline with the real linters and validators, and the monitoring path end to end."""

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.images import encode, scene
from tests.server import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="Debian's prometheus package is not installed (.ci/run installs it)"
)


def run(*command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_dockerfile_passes_hadolint():
    run(str(VENV_BIN / "hadolint"), "Dockerfile")


def test_dockerfile_runs_the_service_as_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER 10001\n" in text
    assert 'HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \\\n    CMD ["python"' in text
    assert 'CMD ["relight-serve"]' in text
    assert "[train]" not in text and "[dev]" not in text


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.cpu.yml"]])
def test_compose_files_are_valid(files):
    arguments = [arg for name in files for arg in ("-f", name)]
    config = json.loads(run(str(VENV_BIN / "docker-compose"), *arguments, "config", "--format", "json").stdout)
    relight = config["services"]["relight"]
    assert relight["read_only"] is True and relight["user"] == "10001"
    assert {"prometheus", "grafana"} <= set(config["services"])
    devices = relight.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if files == ["docker-compose.yml"]:
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    else:
        assert devices == [] and relight["environment"]["RELIGHT_DEVICE"] == "cpu"


def test_kubernetes_manifests_validate_strictly():
    manifests = sorted(str(p) for p in (ROOT / "deploy" / "k8s").glob("*.yaml"))
    assert len(manifests) == 4
    run(str(VENV_BIN / "kubernetes-validate"), "--strict", *manifests)


def test_grafana_dashboard_parses_and_shows_what_operators_need():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "relight.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for needle in ("relight_requests_total", "histogram_quantile(0.99", "relight_stage_duration_seconds_bucket",
                   "relight_batch_size_bucket", "relight_queue_depth"):  # fmt: skip
        assert needle in expressions


@needs_prometheus
def test_prometheus_config_and_rules_pass_promtool():
    run(PROMTOOL, "check", "config", "deploy/prometheus/prometheus.yml")
    run(PROMTOOL, "check", "rules", "deploy/prometheus/alerts.yml")


@needs_prometheus
def test_real_prometheus_scrapes_the_service_and_answers_p99(weights_file, tmp_path):
    with running_server(weights_file, tmp_path) as server:
        shipped = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
        port = server.url.rsplit(":", 1)[1]
        config = shipped.replace("relight:8000", f"127.0.0.1:{port}").replace("15s", "1s")
        assert config != shipped
        (tmp_path / "prometheus.yml").write_text(config)
        shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
        api = f"http://127.0.0.1:{free_port()}"
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={api.removeprefix('http://')}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
        )  # fmt: skip
        try:
            query = "histogram_quantile(0.99, sum by (le) (rate(relight_request_duration_seconds_bucket[30s])))"
            value = math.nan
            deadline = time.monotonic() + 90
            while math.isnan(value) and time.monotonic() < deadline:
                assert httpx.post(server.url + "/relight", files={"image": ("a.png", encode(scene(32, 32)))}).is_success
                time.sleep(0.5)
                try:
                    answer = httpx.get(api + "/api/v1/query", params={"query": query}).json()
                except httpx.TransportError:
                    continue
                results = answer["data"]["result"]
                value = float(results[0]["value"][1]) if results else math.nan
            assert 0 < value < 60, (tmp_path / "prometheus.log").read_text()[-2000:]
            rules = httpx.get(api + "/api/v1/rules").json()["data"]["groups"][0]["rules"]
            assert {rule["name"] for rule in rules} >= {"RelightHighP99Latency", "RelightDown"}
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
