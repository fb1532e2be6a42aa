"""Deployment files, checked offline with the real linters and validators, and the monitoring path end to end."""

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from service.command.main import argument_parser
from tests.images import encode, scene
from tests.server import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="Debian's prometheus package is not installed (.ci/run installs it)"
)
KUBERAY = ROOT / "deploy" / "kuberay"
# The fields of KubeRay's ray.io/v1 RayJob and RayCluster specs (ray-operator/apis/ray/v1/rayjob_types.go and
# raycluster_types.go, v1.1 to v1.4) that a manifest may set. No validator here knows the CRD, and the API server
# drops a misspelt field of a custom resource without a word, so the manifest's keys are checked against these.
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
               "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
               "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}  # fmt: skip
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
                   "headServiceAnnotations", "suspend"}  # fmt: skip
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                "scaleStrategy"}  # fmt: skip


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


def kuberay_job() -> dict:
    return yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())


def test_kuberay_job_has_known_fields_valid_pods_and_a_relight_command_that_fits_its_gpus(tmp_path):
    job = kuberay_job()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    head, workers = cluster["headGroupSpec"], cluster["workerGroupSpecs"]
    assert set(spec) <= RAYJOB_SPEC and set(cluster) <= RAYCLUSTER_SPEC
    assert {"rayStartParams", "template"} <= set(head) <= HEAD_GROUP
    for group in workers:
        assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group) <= WORKER_GROUP
    # Each group's pod template, as a Pod, through the same strict validation as deploy/k8s.
    pods = []
    for name, group in [("head", head), *((group["groupName"], group) for group in workers)]:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"relight-dataset-{name}",
               **group["template"].get("metadata", {})}, "spec": group["template"]["spec"]}  # fmt: skip
        pods.append(tmp_path / f"{name}.yaml")
        pods[-1].write_text(yaml.safe_dump(pod))
    run(str(VENV_BIN / "kubernetes-validate"), "--strict", *map(str, pods))

    # One image, with the Ray version the RayCluster declares, on every node; the workers hold the GPUs.
    containers = [group["template"]["spec"]["containers"][0] for group in [head, *workers]]
    assert len({container["image"] for container in containers}) == 1
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", (KUBERAY / "Dockerfile").read_text(), re.MULTILINE)[1]
    assert cluster["rayVersion"] == ray_version
    gpus = sum(group["replicas"] * int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get(
        "nvidia.com/gpu", 0)) for group in workers)  # fmt: skip
    # The entrypoint is a `relight` command line that joins the job's cluster (RAY_ADDRESS) and asks for no more
    # GPUs than the workers have.
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "relight"
    args = argument_parser().parse_args(argv[1:])
    assert args.ray == "" and "://" in args.source and "://" in args.out_dir
    assert 0 < args.actors * args.gpus_per_actor <= gpus


def test_kuberay_image_passes_hadolint():
    run(str(VENV_BIN / "hadolint"), "deploy/kuberay/Dockerfile")


def test_ray_reads_the_kuberay_cluster_as_a_cpu_free_head_and_gpu_workers():
    """Ray's autoscaler derives each group's Ray resources from a RayCluster spec (and checks the result against its
    own config schema) on a live KubeRay cluster; here the same code reads the job's cluster spec offline."""
    pytest.importorskip("ray")
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    job = kuberay_job()
    cluster = {"metadata": {"name": job["metadata"]["name"], "namespace": "default"},
               "spec": job["spec"]["rayClusterSpec"]}  # fmt: skip
    node_types = _derive_autoscaling_config_from_ray_cr(cluster)["available_node_types"]
    assert node_types["headgroup"]["resources"]["CPU"] == 0  # no image work on the head: it runs the driver
    gpu_group = node_types["gpu"]
    assert gpu_group["resources"]["GPU"] == 1 and gpu_group["resources"]["CPU"] >= 2  # CPUs left to read and write
    assert gpu_group["min_workers"] == gpu_group["max_workers"] == 4


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
