"""The project's command line: Kedro's ``kedro run``, made to work on a fresh clone.

Kedro loads this module in place of its own ``run`` (project ``cli.py`` overrides built-in
commands; ``hle-reasoning`` / ``python -m hle_reasoning`` use it too). It adds two things and
changes nothing else:

* ``kedro run --pipelines training`` (or ``evaluation``, or any selection of pipelines, with no
  other node filter) first finds the selected pipelines' free inputs that another pipeline of
  the study produces and that do not exist yet (``focus_train`` on a fresh clone), adds the
  nodes of the whole study that produce them, says so in one line, and runs them all in one
  run. Everything upstream here is cheap and deterministic (the split, the tiny base model).
  An optional input (``OPTIONAL_INPUTS``: the training's completions table, which the report
  shows when it exists) never adds its producer: ``--pipelines evaluation`` does not retrain.
* An unknown pipeline name, and a problem the project reports with a message of its own (a
  configuration Kedro's parameter validation or the preflight rejects, every problem of it with
  its full key path, an LLM judge that refuses the key or model, an invalid
  HLE export, a distributed worker that failed: its rank and error), end the command with that message and exit status 1, without a traceback.

Around Kedro's run (``hle_reasoning.launch``): the conf files are read first (invalid YAML, a
credentials file of the wrong shape: one message), the project's data folder is locked (a second
run in the folder stops at once, naming the first's pid), SIGTERM stops the run like Ctrl-C
(exit status 143), and an unfinished run is recorded KILLED or FAILED in MLflow; a broken
``mlflow.db`` is named with what to do.

Once the run is over (its MLflow run closed, its outputs written, its worker processes joined),
the interpreter's final garbage collection is skipped (``exit_without_collection``): on a heap
that holds torch and transformers it takes seconds and frees nothing a finished process needs.
Exit handlers still run (log handlers flush, temporary folders go).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

logger = logging.getLogger(__name__)

# Inputs whose absence is no reason to run their producers: their datasets load empty, and the
# node that reads them does without (the report's training section, before any training).
OPTIONAL_INPUTS = frozenset({"training_completions"})

# Node filters that mean "exactly these nodes": then nothing is added.
_FILTERS = ("node_names", "from_nodes", "to_nodes", "from_inputs", "to_outputs", "tags")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, name=__file__)
def cli() -> None:
    """Project commands of hle-reasoning."""


def missing_upstream(selected: Any, full: Any, exists: Any) -> tuple[list[str], list[str]]:
    """The free inputs of ``selected`` that ``full`` produces and ``exists(name)`` says are
    missing, and the names of the nodes of ``full`` (not in ``selected``) that produce them."""
    produced = full.all_outputs()
    missing = sorted(
        name
        for name in selected.inputs()
        if not name.startswith("params:") and name != "parameters" and name in produced
        and name not in OPTIONAL_INPUTS and not exists(name)
    )  # fmt: skip
    if not missing:
        return [], []
    chosen = {node.name for node in selected.nodes}
    upstream = [node.name for node in full.to_outputs(*missing).nodes if node.name not in chosen]
    return missing, upstream


def _project_path() -> Path:
    from kedro.utils import find_kedro_project

    return find_kedro_project(Path.cwd()) or Path.cwd()


def _catalog(kwargs: dict[str, Any]) -> Any:
    """The run's data catalog, to ask which datasets exist: its catalog (and credentials) entries
    as the run's config loader reads them. No context: the parameters are left to the session,
    which reads them once, under the run lock, with its plugins' hooks."""
    from kedro.config import MissingConfigException
    from kedro.framework.project import settings
    from kedro.io import DataCatalog

    project = _project_path()
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(kwargs.get("conf_source") or project / settings.CONF_SOURCE),
        env=kwargs.get("env"),
        runtime_params=kwargs.get("params") or {},
        **settings.CONFIG_LOADER_ARGS,
    )
    try:
        credentials = loader["credentials"]
    except MissingConfigException:  # Kedro's context reads none then too
        credentials = {}
    return DataCatalog.from_config(loader["catalog"], credentials)


def _with_upstream(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of Kedro's run, with the producers of missing upstream outputs added."""
    names = list(kwargs.get("pipelines") or []) or (
        [kwargs["pipeline"]] if kwargs.get("pipeline") else []
    )
    if not names or "__default__" in names or any(kwargs.get(f) for f in _FILTERS):
        return kwargs
    from kedro.framework.project import pipelines

    known = sorted(pipelines.keys())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.ClickException(
            f"unknown pipeline {', '.join(map(repr, unknown))}: choose from {', '.join(known)}"
        )
    selected = sum((pipelines[name] for name in names[1:]), pipelines[names[0]])
    catalogs: list[Any] = []  # built on the first question only: none for data_processing

    def exists(name: str) -> bool:
        # From the project's root: Kedro's context makes the catalog's relative paths absolute,
        # a bare catalog leaves them relative to the folder `kedro run` was started in.
        with contextlib.chdir(_project_path()):
            if not catalogs:
                catalogs.append(_catalog(kwargs))
            return catalogs[0].exists(name)

    missing, upstream = missing_upstream(selected, pipelines["__default__"], exists)
    if not upstream:
        return kwargs
    click.echo(
        f"hle-reasoning: {', '.join(missing)} not found; running first the "
        f"{len(upstream)} node(s) of the study that make them ({', '.join(upstream)})"
    )
    return {
        **kwargs,
        "pipeline": None,
        # The study's pipeline holds the producers; the node names pick them and the selection.
        "pipelines": [*names, "__default__"],
        "node_names": tuple(sorted({n.name for n in selected.nodes} | set(upstream))),
    }


def _project_errors() -> tuple[type[BaseException], ...]:
    from hle_reasoning.completeness import IncompleteRunError
    from hle_reasoning.config import ConfigError
    from hle_reasoning.hle.data.images import ImageProblem
    from hle_reasoning.hle.data.schema import HLEDataError
    from hle_reasoning.hle.judge.agreement import JudgedFileError
    from hle_reasoning.hle.judge.llm import JudgeConfigError
    from hle_reasoning.modeling.distributed import WorkerFailedError
    from hle_reasoning.modeling.models import ModelAccessError
    from hle_reasoning.modeling.openai_backend import EndpointConfigError
    from hle_reasoning.preflight import PreflightError
    from hle_reasoning.unreachable import EndpointUnreachableError

    return (
        PreflightError,
        ConfigError,
        JudgeConfigError,
        JudgedFileError,
        EndpointConfigError,
        EndpointUnreachableError,
        HLEDataError,
        ImageProblem,
        IncompleteRunError,
        ModelAccessError,
        WorkerFailedError,
    )


def _refused_parameters(kwargs: dict[str, Any], error: BaseException) -> str:
    """The message of a run whose parameters Kedro refused (its ``ParameterValidationError``
    comes as pydantic's text inside a traceback box): the raw parameters validated again with
    the same models, every problem of every block the run reads with its full key path, and
    what the valid blocks ask of the world (the preflight's checks), in one message."""
    from kedro.framework.project import pipelines, settings
    from kedro.utils import find_kedro_project

    from hle_reasoning.config import BLOCKS
    from hle_reasoning.preflight import preflight_problems

    project = find_kedro_project(Path.cwd()) or Path.cwd()
    params = settings.CONFIG_LOADER_CLASS(
        conf_source=str(kwargs.get("conf_source") or project / settings.CONF_SOURCE),
        env=kwargs.get("env"),
        runtime_params=kwargs.get("params") or {},
        **settings.CONFIG_LOADER_ARGS,
    )["parameters"]
    names = [n for n in kwargs.get("pipelines") or [kwargs.get("pipeline")] if n] or ["__default__"]
    datasets = set().union(*(pipelines[n].datasets() for n in names if n in pipelines))
    read = {n.removeprefix("params:").split(".")[0] for n in datasets if n.startswith("params:")}
    problems = preflight_problems(
        params,
        params.get("hle_source") if "hle_questions" in datasets else None,
        uses_model=bool({"base_model", "tokenizer", "params:model"} & datasets),
        uses_device=bool({"base_model", "params:model", "params:model.device"} & datasets),
        blocks=[name for name in BLOCKS if name in read],
    )
    if not problems:  # refused for a reason of Kedro's own: its message, as it gave it
        return str(error)
    # The preflight's message, as for a run the preflight hook refuses.
    return (
        "PreflightError: This run cannot work as configured; no node was run and no output "
        "written:\n" + "\n".join(f"  - {p}" for p in problems)
    )


def _conf_envs(kwargs: dict[str, Any]) -> list[str]:
    import os

    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_ARGS or {}
    run_env = kwargs.get("env") or os.environ.get("KEDRO_ENV") or loader.get("default_run_env")
    return [env for env in dict.fromkeys([loader.get("base_env", "base"), run_env]) if env]


def exit_without_collection() -> None:
    """At exit, before the other exit handlers: move every object to the permanent generation,
    which the interpreter's final collections leave alone."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def _run(**kwargs: Any) -> Any:
    import contextlib
    from pathlib import Path

    from kedro.utils import find_kedro_project

    from hle_reasoning import launch

    project = find_kedro_project(Path.cwd()) or Path.cwd()
    conf_dir = Path(kwargs.get("conf_source") or project / "conf")
    problems = (
        launch.config_file_problems(conf_dir, _conf_envs(kwargs)) if conf_dir.is_dir() else []
    )
    if problems:
        raise click.ClickException(
            "the configuration cannot be read; nothing was run:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    # A worker machine (distributed.machine_rank > 0) writes nothing: machine 0 holds the lock.
    worker = launch.machine_rank(conf_dir, _conf_envs(kwargs), kwargs.get("params") or {}) > 0
    run_kwargs = kwargs
    try:
        # The pipelines are resolved before the lock: a refused name writes nothing, not even
        # the lock file.
        run_kwargs = _with_upstream(kwargs)
        with (
            contextlib.nullcontext() if worker else launch.run_lock(project / "data"),
            launch.recorded_outcome(),
        ):
            return kedro_run.callback(**run_kwargs)
    except launch.LaunchError as error:
        raise click.ClickException(str(error)) from None
    except launch.Terminated:
        click.echo(
            "hle-reasoning: stopped by SIGTERM; the MLflow run is recorded KILLED.", err=True
        )
        raise SystemExit(143) from None
    except Exception as error:
        import mlflow
        from kedro.validation.exceptions import ParameterValidationError

        refused = launch.project_error(error, (ParameterValidationError,))
        if refused is not None:
            raise click.ClickException(_refused_parameters(run_kwargs, refused)) from None
        found = launch.project_error(error, _project_errors())
        if found is not None:
            raise click.ClickException(f"{type(found).__name__}: {found}") from None
        from hle_reasoning.damaged import damaged_dataset_message

        damaged = damaged_dataset_message(error)
        if damaged is not None:
            raise click.ClickException(damaged) from None
        store = launch.tracking_store_problem(error, mlflow.get_tracking_uri())
        if store is not None:
            raise click.ClickException(store) from None
        raise
    finally:  # the session has closed: its MLflow run ended, its outputs saved, the lock released
        exit_without_collection()


run = click.Command(
    name="run",
    params=kedro_run.params,
    callback=_run,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
cli.add_command(run)
