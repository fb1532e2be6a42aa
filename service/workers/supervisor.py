"""relight-serve with RELIGHT_WORKERS > 1: one model process and N HTTP workers on one listening socket.

One Python process cannot use more than about one core for HTTP, multipart parsing and the
codecs that hold the GIL (bench/RESULTS.md); N workers each have their own. The model and
its one queue stay in one process, so batching, admission and the GPU see every upload.

Start: the model process loads the weights and listens (or relight-serve exits with its
reason, as the single process would), then the workers start. Signals come here: SIGHUP is
passed to the model process, which swaps to the file at RELIGHT_WEIGHTS (every worker then sees
the new weights); SIGTERM and Ctrl-C are passed to the workers as SIGTERM, and they drain as the
single process does; once they have all exited, the model process is told to stop. A worker that dies is replaced. If
the model process dies, the workers are stopped and relight-serve exits 1, so that the
container or unit restarts the whole service.
"""

import logging
import multiprocessing
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import uvicorn

from model.allocator import reuse_freed_memory
from service.http.app import create_app
from service.http.draining import DrainingServer
from service.http.header_deadline import header_deadline_protocol
from service.inference.engine import Engine
from service.pid_file import pid_file
from service.settings import Settings
from service.workers import model_process, shared_images
from service.workers.remote_model import RemoteModel

log = logging.getLogger("relight.supervisor")
SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent has imported torch, and CUDA must not be forked


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT: each worker listens on its own, and the kernel spreads new
    connections over them. (On one shared listening socket, the worker that wakes first accepts every
    pending connection, and with keep-alive one worker ended up serving all the load.)"""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise OSError where anything listens on host:port, another relight-serve with workers included
    (SO_REUSEPORT would let two of them share the port)."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def worker_main(settings: Settings, host: str, port: int, socket_path: Path, shared_dir: Path) -> None:
    model_process.deaf_to_hangups()
    os.setpgrp()  # Ctrl-C reaches relight-serve only, which passes it on once as SIGTERM.
    # Uploads, decoded pixels and answers are megabytes each; kept by the heap, they are not faulted in anew.
    reuse_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = RemoteModel(socket_path, shared_dir, on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM))
    app = create_app(settings, model=model)
    listening = reuse_port_socket(host, port)
    listening.listen(2048)
    http = header_deadline_protocol(settings.header_timeout_s)
    config = uvicorn.Config(app, log_level="info", timeout_keep_alive=5, http=http)
    DrainingServer(config, app.state.service).run(sockets=[listening])


def start_deaf_to_signals(process: BaseProcess) -> None:
    """Start `process` with SIGINT ignored and SIGHUP blocked, which its new interpreter keeps through exec (Python
    installs its KeyboardInterrupt handler only where SIGINT is at its default). SIGINT: a terminal's Ctrl-C reaches
    the whole process group, the child too until its own os.setpgrp(), and broke its start-up with a traceback;
    uvicorn, in an HTTP worker, takes SIGINT back when it serves. SIGHUP: relight-serve passes swaps on itself, and
    one that reached a child (`systemctl kill` signals every process of the unit) ended it, the model process taking
    the service down; the child ignores it from its first line (model_process.deaf_to_hangups), and until then a
    blocked one waits. Here SIGHUP keeps its handler, so that one sent to relight-serve meanwhile is not lost
    (another thread, where this one blocks it, takes it)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def serve(settings: Settings, engine_factory: Callable[[Settings], Engine], host: str, port: int) -> int | str:
    """Run until signalled; returns the exit status (0 drained, 1 the model process died, or why it cannot start)."""
    # First, before any process starts and before the pid file invites signals: the default actions would end
    # relight-serve while the model process loads the weights, SIGHUP's for good, SIGTERM's and Ctrl-C's leaving that
    # process running without its parent.
    hangups: list[int] = []
    signal.signal(signal.SIGHUP, lambda sig, frame: hangups.append(sig))
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda sig, frame: signals.append(sig))
    with pid_file(settings.pid_file):
        run_dir = Path(tempfile.mkdtemp(prefix="relight-"))
        shared_dir = shared_images.make_directory()
        log.info("%d HTTP workers and a model process; images pass through %s", settings.workers, shared_dir)
        try:
            return supervise(settings, engine_factory, host, port, run_dir, shared_dir, hangups, signals)
        finally:
            shared_images.remove_directory(shared_dir)
            shared_images.remove_directory(run_dir)


def supervise(
    settings: Settings,
    engine_factory: Callable[[Settings], Engine],
    host: str,
    port: int,
    run_dir: Path,
    shared_dir: Path,
    hangups: list[int],
    signals: list[int],
) -> int | str:
    """serve's work once the folders exist; `hangups` and `signals` grow as the handlers take SIGHUPs and stops."""
    socket_path = run_dir / "model.sock"
    to_model, model_end = SPAWN.Pipe()
    model = SPAWN.Process(
        target=model_process.main, args=(settings, engine_factory, socket_path, model_end), name="relight-model"
    )
    start_deaf_to_signals(model)
    model_end.close()
    while not to_model.poll(0.1) and model.is_alive():
        if signals:  # nothing accepted yet: nothing to drain
            log.info("signal %d while the model process starts: stopping it", signals[0])
            model.terminate()
            model.join()
            return 0
    try:
        started, reason = to_model.recv()
    except EOFError:
        started, reason = "failed", f"the model process exited with {model.exitcode}"
    if started == "failed":
        model.join()
        return f"relight: cannot start: {reason}"
    try:
        check_port_free(host, port)
        # Bound, never listening: it holds the port for the workers' sockets.
        port_held = reuse_port_socket(host, port)
    except OSError as error:
        to_model.send("stop")
        model.join()
        return f"relight: cannot start: cannot listen on {host}:{port}: {error}"
    # Set after the model process started: its metrics stay in its own registry, the workers' go to files.
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log.info("listening on http://%s:%d", host, port)

    def start_worker(index: int) -> BaseProcess:
        worker = SPAWN.Process(
            target=worker_main, args=(settings, host, port, socket_path, shared_dir), name=f"relight-http-{index}"
        )
        start_deaf_to_signals(worker)
        return worker

    workers = [start_worker(index) for index in range(settings.workers)]
    # wait() below resumes by itself after a signal handler runs; a byte on this pipe wakes it, so that a
    # signal reaches the workers at once, not at the next timeout.
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    passed_on, reloads, status = 0, 0, 0
    while True:
        if woken in wait([woken, model.sentinel, *(worker.sentinel for worker in workers)], timeout=0.5):
            os.read(woken, 64)
        if len(hangups) > reloads and model.is_alive() and not signals:
            log.info("SIGHUP: telling the model process to swap to the weight file at RELIGHT_WEIGHTS")
            to_model.send("reload")
        reloads = len(hangups)
        if not model.is_alive() and not status:
            log.error("the model process exited with %s; stopping the workers", model.exitcode)
            status = 1
            signals.append(signal.SIGTERM)
        for sig in signals[passed_on:]:
            log.info("signal %d: passing it to the HTTP workers as SIGTERM", sig)
            for worker in workers:
                if worker.is_alive():
                    os.kill(worker.pid, signal.SIGTERM)
        passed_on = len(signals)
        if signals:
            if not any(worker.is_alive() for worker in workers):
                break
            continue
        for index, worker in enumerate(workers):
            if worker.exitcode is not None:
                log.error("HTTP worker %d exited with %s; starting another", worker.pid, worker.exitcode)
                for buffer in shared_dir.glob(f"{worker.pid}-*"):
                    buffer.unlink(missing_ok=True)  # its shared buffers; named by worker (shared_images)
                workers[index] = start_worker(index)
    signal.set_wakeup_fd(-1)
    os.close(woken)
    os.close(wake)
    port_held.close()
    if model.is_alive():
        if len(signals) > 1:
            # A second signal: the workers have left their accepted requests; the batch the model is running
            # would only delay the exit.
            model.terminate()
            status = status or 128 + signals[1]
        else:
            to_model.send("stop")
        model.join()
    return status
