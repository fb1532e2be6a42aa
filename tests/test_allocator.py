"""The engine's forward passes reuse the C heap's memory instead of faulting their working set in."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# A fresh interpreter: mallopt settings are process-wide and cannot be undone.
PROBE = textwrap.dedent(
    """
    import concurrent.futures, json, resource
    import numpy as np
    from service.inference.engine import Engine
    from service.settings import Settings

    settings = Settings(weights=WEIGHTS, warmup="1024x1024", warmup_tile=False, compile="off")
    engine = Engine(settings)
    worker = concurrent.futures.ThreadPoolExecutor(1)  # as the batcher runs the engine
    worker.submit(engine.warm_up, settings.warmup_shapes(), lambda height, width: 1).result()
    pixels = np.random.default_rng(0).integers(0, 256, (1, 1024, 1024, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    worker.submit(engine.run, pixels).result()
    print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
    """
)


def test_a_warm_forward_pass_on_the_worker_thread_faults_almost_no_pages(weights_file):
    # glibc's defaults fault about 600,000 pages (2.4 GB) in a 1024x1024 pass on a worker thread.
    result = subprocess.run(
        [sys.executable, "-c", PROBE.replace("WEIGHTS", repr(str(weights_file)))],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    faults = json.loads(result.stdout.strip().splitlines()[-1])["faults"]
    assert faults < 20_000
