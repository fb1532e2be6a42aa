"""`relight --server URL`: the files sent to a running relight service, several at once, a 503 retried after
its Retry-After."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from tqdm import tqdm

from service.command.tasks import Failures, FileTask, write_output

MAX_RETRIES = 20


def relight_on_server(tasks: list[FileTask], url: str, jobs: int, api_key: str | None, bar: tqdm, failures: Failures):
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(600, connect=10)) as client:

        def send(task: FileTask) -> None:
            params = {"format": task.image_format} if task.image_format else {}
            for _ in range(MAX_RETRIES):
                try:
                    response = client.post("/relight", files={"image": (task.source.name, task.source.read_bytes())},
                                           params=params)  # fmt: skip
                except (httpx.HTTPError, OSError) as error:
                    failures.report(task, f"{type(error).__name__}: {error}")
                    break
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("retry-after", 1)))
                    continue
                if response.status_code == 200:
                    write_output(task, response.content)
                else:
                    try:
                        detail = response.json()["detail"]
                    except ValueError:
                        detail = response.text[:200]
                    failures.report(task, f"{response.status_code}: {detail}")
                break
            else:
                failures.report(task, f"still 503 after {MAX_RETRIES} tries")
            bar.update()

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(send, tasks))
