"""Serving engines the study starts and stops itself (``evaluation.answering.<variant>.backend:
engine``): SGLang, vLLM and ``transformers serve``, each an OpenAI-compatible server.

:func:`engine_command` builds the engine's own command line (the real CLIs: ``python -m
sglang.launch_server --model-path ...``, ``vllm serve ...``, ``transformers serve ...``);
``modeling.engine_checks`` says, before any node runs, why an engine cannot serve here and
which pass-through option it would misread; :class:`ManagedEngine`
starts the engine as a subprocess in its own process group on a free local port, waits for its
``/health`` endpoint, and stops the whole group on leaving its ``with`` block: on success, on an
error, on Ctrl-C and (while it runs in the main thread) on SIGTERM, which it turns into an
exception so the same clean-up runs. An ``atexit`` hook stops any engine still running when the
interpreter exits, and on Linux the engine's first process gets SIGTERM when its parent dies.
The engine's whole output is saved to a log file; an engine that exits or never becomes healthy
raises :class:`EngineError` with the last lines of that log.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOG_TAIL_LINES = 30
MERGED_FROM_FILE = "merged_from.json"  # a merged checkpoint's origin (merged_from)


@dataclass(frozen=True)
class EngineKind:
    """One serving engine: the distribution that provides it, what it needs, where it is healthy."""

    name: str
    distribution: str  # whose version is logged
    modules: tuple[str, ...]  # importable when the engine is installed
    install: str  # how to install it
    gpu_only: bool
    serves_mllama: bool
    health_path: str = "/health"


ENGINES = {
    "sglang": EngineKind(
        "sglang",
        "sglang",
        ("sglang",),
        'pip install "sglang[all]"',
        gpu_only=True,
        serves_mllama=True,
    ),
    "vllm": EngineKind(
        "vllm",
        "vllm",
        ("vllm",),
        "pip install vllm",
        gpu_only=True,
        # vLLM removed MllamaForConditionalGeneration after 0.10.2 (vllm PR #24907).
        serves_mllama=False,
    ),
    "transformers": EngineKind(
        "transformers",
        "transformers",
        ("transformers", "fastapi", "uvicorn"),
        'pip install "transformers[serving]"',
        gpu_only=False,
        serves_mllama=True,
    ),
}


class EngineError(RuntimeError):
    """The managed engine exited, or never became healthy; the message carries its log's tail."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the system picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _script(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (else from ``PATH``)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def engine_command(
    engine: str,
    model: str,
    port: int,
    *,
    dtype: str,
    mllama: bool = False,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    host: str = HOST,
) -> list[str]:
    """The engine's command line serving ``model`` on ``host:port`` in ``dtype``.

    ``options`` are the engine's own options, passed through as ``--name value`` (``true``:
    the bare flag, ``false``/``null``: left out; an option the project sets, e.g. ``dtype``,
    is replaced). Names may be written with ``_`` or ``-``.
    """
    if engine == "sglang":
        base = {"model-path": model, "host": host, "port": port, "dtype": dtype}
        if mllama:  # SGLang's chat template for Llama 3.2 Vision (image part before the text)
            base["chat-template"] = "llama_3_vision"
        head = [sys.executable, "-m", "sglang.launch_server"]
    elif engine == "vllm":
        base = {"host": host, "port": port, "dtype": dtype}
        head = [_script("vllm"), "serve", model]
    elif engine == "transformers":
        base = {"host": host, "port": port, "dtype": dtype, "device": device}
        head = [_script("transformers"), "serve", model]
    else:
        raise ValueError(f"unknown engine {engine!r}; one of {sorted(ENGINES)}")
    merged = {**base, **{k.replace("_", "-"): v for k, v in (options or {}).items()}}
    command = list(head)
    for name, value in merged.items():
        if value is None or value is False:
            continue
        command.append(f"--{name}")
        if value is not True:
            command.append(str(value))
    return command


def merged_from(base_model: str, adapter: str, dtype: str) -> dict[str, str]:
    """What a merged checkpoint (``base_model`` with the LoRA ``adapter`` merged in, in
    ``dtype``) is made from: the two folders' content hashes and the dtype. Both writers of the
    checkpoint save it beside the weights as ``MERGED_FROM_FILE`` (``kedro run --pipelines
    serving`` and the engine path, which reuses a checkpoint whose file matches)."""
    from hle_reasoning.modeling.generation import files_fingerprint

    return {
        "base_model": files_fingerprint(base_model),
        "adapter": files_fingerprint(adapter),
        "dtype": dtype,
    }


def engine_version(engine: str) -> str:
    try:
        return importlib.metadata.version(ENGINES[engine].distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


_RUNNING: set[ManagedEngine] = set()
_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Stop every engine still running when the interpreter exits."""
    with _LOCK:
        running = list(_RUNNING)
    for engine in running:
        engine.stop()


def _death_signal() -> Any:
    """Linux: a function for the child, between fork and exec, that makes the engine's first
    process get SIGTERM when the process that started it dies (even by SIGKILL, when no clean-up
    of ours can run). libc is loaded here, in the parent: the child only calls ``prctl``."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Terminated(SystemExit):
    """SIGTERM while an engine runs: unwinds like ``sys.exit(143)`` so the engine is stopped."""


@dataclass
class ManagedEngine:
    """One engine process group on a free local port; a context manager that stops it whole.

    ``with ManagedEngine(...) as engine:`` starts the engine, waits (``start_timeout_s``) for
    ``http://127.0.0.1:<port>/health`` to answer 200, and yields itself (``engine.base_url``
    is the OpenAI-compatible ``/v1`` URL). Leaving the block stops it: SIGTERM to its process
    group, SIGKILL to whatever is left after ``grace_s``.
    """

    engine: str
    model: str
    log_path: Path
    dtype: str = "auto"
    mllama: bool = False
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    start_timeout_s: float = 600.0
    grace_s: float = 15.0
    port: int = 0
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _previous_sigterm: Any = field(default=None, init=False, repr=False)

    def __hash__(self) -> int:
        return id(self)

    @property
    def command(self) -> list[str]:
        return engine_command(
            self.engine,
            self.model,
            self.port,
            dtype=self.dtype,
            mllama=self.mllama,
            device=self.device,
            options=self.options,
        )

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}{ENGINES[self.engine].health_path}"

    def info(self) -> dict[str, str]:
        """What the MLflow run records (engine, version, command, precision, model, log) and
        the engine's process id."""
        return {
            "engine": self.engine,
            "version": engine_version(self.engine),
            "command": shlex.join(self.command),
            "precision": self.dtype,
            "model": self.model,
            "log": str(self.log_path),
            "pid": str(self.process.pid if self.process else ""),
        }

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> ManagedEngine:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command
        logger.info("Starting %s: %s (log %s)", self.engine, shlex.join(command), self.log_path)
        self._install_sigterm()
        env = {**os.environ, **(self.env or {})}
        with self.log_path.open("w") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stopped whole
                # Only a prctl call between fork and exec: no lock, no import, no allocation.
                preexec_fn=_death_signal(),  # noqa: PLW1509
            )
        with _LOCK:
            _RUNNING.add(self)

    def wait_healthy(self) -> None:
        started = time.monotonic()
        deadline = started + self.start_timeout_s
        while True:
            if not self.alive():
                raise self.failure(f"exited with code {self.process.returncode} while starting")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise self.failure(
                    f"did not become healthy ({self.health_url}) in {self.start_timeout_s:g} s "
                    "(evaluation.answering.<variant>.start_timeout_s)"
                )
            time.sleep(0.25)
        logger.info(
            "%s is serving %s at %s (healthy after %.1f s)",
            self.engine,
            self.model,
            self.base_url,
            time.monotonic() - started,
        )

    def failure(self, what: str) -> EngineError:
        """An :class:`EngineError` saying ``what`` happened, with the log's last lines."""
        return EngineError(
            f"the {self.engine} engine serving {self.model} {what}. Answers stored so far are "
            f"kept; a rerun asks only the rest. Its whole log is {self.log_path}; its last "
            f"lines:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM the engine's process group, SIGKILL what is left after ``grace_s``; idempotent."""
        process = self.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline and _group_alive(process.pid):
                time.sleep(0.1)
            if _group_alive(process.pid):
                logger.warning("%s did not stop in %g s: killing it", self.engine, self.grace_s)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if self in _RUNNING:
                logger.info("Stopped %s (pid %d; log %s)", self.engine, process.pid, self.log_path)
        with _LOCK:
            _RUNNING.discard(self)
        self._restore_sigterm()

    def _install_sigterm(self) -> None:
        """Main thread only: SIGTERM unwinds as ``SystemExit(143)`` and Ctrl-C as
        ``KeyboardInterrupt``, and both first send SIGTERM to the engine's group, so requests in
        flight fail at once instead of holding the unwinding until they finish."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers; atexit and PDEATHSIG remain
        previous = {}

        def interrupted(signum: int, frame: Any) -> None:
            if self.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGTERM)
            if signum == signal.SIGTERM:
                raise _Terminated(128 + signum)
            handler = previous.get(signum)
            if callable(handler) and handler is not signal.default_int_handler:
                handler(signum, frame)
            raise KeyboardInterrupt

        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum == signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
                continue  # a job that ignores Ctrl-C keeps ignoring it
            previous[signum] = signal.signal(signum, interrupted)
        self._previous_sigterm = previous

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm and threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_sigterm.items():
                signal.signal(signum, handler)
            self._previous_sigterm = None


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def write_info(path: Path, info: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
