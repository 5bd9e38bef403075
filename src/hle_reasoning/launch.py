"""What ``kedro run`` makes sure of around Kedro: one run per study folder, readable conf files,
a clear word on a broken MLflow database, and an MLflow record that says how the run ended.

* :func:`run_lock`: an exclusive file lock on the project's ``data`` folder, taken before anything
  is written; a second ``kedro run`` in the same folder stops at once, naming the running one's pid.
* :func:`config_file_problems`: every YAML file of the run's conf environments parses, and a
  credentials file is a mapping of named entries (Kedro ignores a plain string silently).
* :func:`recorded_outcome`: SIGTERM interrupts the run like Ctrl-C, and a run that does not finish
  is ended KILLED (interrupted) or FAILED (any other error) in MLflow, instead of the FINISHED
  MLflow's exit handler would record (or the RUNNING a killed process leaves).
* :func:`tracking_store_problem`: a corrupt, read-only, locked or half-migrated ``mlflow.db``
  named in one message with what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from hle_reasoning import tracking

LOCK_FILE = ".kedro_run.lock"


class LaunchError(RuntimeError):
    """``kedro run`` cannot start here (another run holds the folder, a conf file is broken)."""


class Terminated(BaseException):
    """SIGTERM received: the run is stopped like Ctrl-C (not an ``Exception``, so no node or
    library treats it as an error to recover from)."""


@contextlib.contextmanager
def run_lock(data_dir: Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``data_dir`` for the block (released at exit, even on SIGKILL).

    The lock file holds the holder's pid, so a refused run can name it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LaunchError(
            f"another `kedro run` (pid {holder}) is running in this project: {path} is locked. "
            "One study folder takes one run at a time (they share data/ and mlflow.db); wait for "
            f"it to finish, or stop it (kill {holder}). To run another study beside it, copy the "
            "project to another folder."
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


def _yaml_files(folder: Path) -> list[Path]:
    files = [*folder.rglob("*.yml"), *folder.rglob("*.yaml")]
    return sorted(p for p in files if not any(part.startswith(".") for part in p.parts[-2:]))


def config_file_problems(conf_dir: Path, envs: list[str]) -> list[str]:
    """Each YAML file of ``conf_dir/<env>`` that does not parse (file, line, column, problem), and
    each credentials file that is not a mapping of named entries."""
    problems = []
    for env in envs:
        for path in _yaml_files(conf_dir / env):
            try:
                content = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
                what = getattr(error, "problem", None) or str(error).splitlines()[0]
                problems.append(f"{where}: not valid YAML ({what}); fix that line.")
                continue
            except (OSError, UnicodeDecodeError) as error:
                problems.append(f"{path}: cannot be read ({error}).")
                continue
            if path.name.startswith("credentials"):
                problems += _credentials_problems(path, content)
    return problems


def machine_rank(conf_dir: Path, envs: list[str], runtime_params: dict[str, Any]) -> int:
    """``distributed.machine_rank`` as the run will see it (``--params`` over the last
    environment's parameters files); 0 when unset or not a plain number. A worker machine
    (rank > 0) writes nothing, and shares the folder with machine 0 on shared storage."""

    def rank_in(params: Any) -> Any:
        block = params.get("distributed") if isinstance(params, dict) else None
        return block.get("machine_rank") if isinstance(block, dict) else None

    rank = rank_in(runtime_params)
    for env in reversed(envs):
        if rank is not None:
            break
        for path in _yaml_files(conf_dir / env):
            if path.name.startswith("parameters"):
                with contextlib.suppress(yaml.YAMLError, OSError, UnicodeDecodeError):
                    found = rank_in(yaml.safe_load(path.read_text(encoding="utf-8")))
                    rank = found if found is not None else rank
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else 0


def _credentials_problems(path: Path, content: Any) -> list[str]:
    example = "hle_judge: {api_key: sk-..., base_url: ...}"
    if content is None:
        return []
    if not isinstance(content, dict):
        return [
            f"{path} holds a {type(content).__name__}, but Kedro reads credentials as a mapping of "
            f"named entries (e.g. `{example}`); nothing in it would be used. Rewrite it as a mapping."
        ]
    return [
        f"{path}: the entry {key!r} is a {type(value).__name__}, but each credentials entry is a "
        f"mapping of its fields (e.g. `{example}`); Kedro would pass it on unusable."
        for key, value in content.items()
        if not isinstance(value, dict)
    ]


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def recorded_outcome() -> Iterator[None]:
    """For the block: SIGTERM raises :class:`Terminated`, and MLflow runs still active when the
    block ends by an interrupt are ended KILLED, by any other error FAILED (with the reason as
    the ``hle_reasoning.ended_by`` tag). A successful block leaves the runs to kedro-mlflow."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (KeyboardInterrupt, Terminated) as interrupt:
        tracking.end_active_runs("KILLED", str(interrupt) or "Ctrl-C")
        raise
    except SystemExit as leaving:
        if leaving.code not in (None, 0):
            tracking.end_active_runs("FAILED", f"exit status {leaving.code}")
        raise
    except BaseException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        tracking.end_active_runs("FAILED", f"{type(error).__name__}: {first}"[:500])
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def project_error(error: BaseException, kinds: tuple[type[BaseException], ...]):
    """The first error of ``kinds`` in ``error``'s chain (Kedro wraps a dataset's in its own)."""
    return next((e for e in _chain(error) if isinstance(e, kinds)), None)


_STORE_ADVICE = (
    (
        ("file is not a database", "malformed", "not a database"),
        "it is not a readable SQLite database (corrupt or overwritten)",
        "move it aside (`mv {db} {db}.broken`) and run again: MLflow starts a new, empty record; "
        "the outputs in data/ are not affected",
    ),
    (
        ("readonly database", "unable to open database", "read-only"),
        "it (or its folder) cannot be written",
        "make both writable (`chmod u+w {db} {folder}`), or point server.mlflow_tracking_uri in "
        "conf/base/mlflow.yml at a writable place",
    ),
    (
        ("database is locked",),
        "another process holds it locked",
        "wait for it (an `mlflow ui` import, a run of another folder sharing it) or stop it, then "
        "run again",
    ),
    (
        ("out-of-date database schema", "duplicate column", "already exists", "alembic"),
        "its schema is older or half-migrated (a migration interrupted, or run by two processes)",
        "back it up, then `mlflow db upgrade sqlite:///{db}`; if that fails, move it aside "
        "(`mv {db} {db}.broken`) and run again for a new, empty record",
    ),
)


def tracking_store_problem(error: BaseException, tracking_uri: str | None) -> str | None:
    """One message for an error of the SQLite MLflow database in ``error``'s chain (else None)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    db_errors = [e for e in _chain(error) if _is_db_error(e)]
    if not db_errors:
        return None
    text = " ".join(str(e) for e in db_errors).lower()
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    for needles, what, todo in _STORE_ADVICE:
        if any(n in text for n in needles):
            folder = db.parent if str(db.parent) != "" else Path(".")
            return (
                f"The MLflow database {db} ({tracking_uri}, server.mlflow_tracking_uri in "
                f"mlflow.yml) cannot be used: {what}. To go on: {todo.format(db=db, folder=folder)}."
                f"\n  MLflow said: {str(db_errors[-1]).splitlines()[0][:300]}"
            )
    return None


def _is_db_error(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        return True
    module = type(error).__module__
    if module.startswith(("sqlalchemy", "alembic")):
        return True
    return type(error).__name__ == "MlflowException" and "database" in str(error).lower()
