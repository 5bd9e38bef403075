"""Project hooks: tag MLflow runs with the git commit and the experiment with its view; close
every run with a short summary. The worker machines' hook is in ``hle_reasoning.worker_machine``,
the preflight hook in ``hle_reasoning.preflight``, the
damaged-dataset hook in ``hle_reasoning.damaged``, and the run's completeness (unanswered or
unjudged questions refuse the run) in ``hle_reasoning.completeness``."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.hooks import hook_impl

from hle_reasoning import tracking
from hle_reasoning.completeness import (
    completeness,
    counts_on_disk,
    refuse_incomplete,
    tag_stopped_run,
    wanted_rows,
)
from hle_reasoning.damaged import dataset_path
from hle_reasoning.summaries import TrainingSummary, VariantRun

if TYPE_CHECKING:
    from hle_reasoning.hle.scoring.comparison import PairedComparison

logger = logging.getLogger(__name__)


def git_state(path: Path) -> dict[str, str]:
    """Commit and dirtiness of the repository holding ``path`` ({} outside a repository)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
    }


class TrackingTagsHook:
    """At the first node of a tracked run: the run's git tags (``mlflow.source.git.commit``, shown
    by the MLflow UI, ``git_commit``, ``git_dirty``) and the experiment's tags.

    The experiment's tags are those ``conf/base/mlflow.yml`` gives kedro-mlflow for a new
    experiment (``create_experiment_kwargs.tags``: the experiment kind, the saved runs-table
    view, whose first columns the metric registry gives: ``experiment_tags``); kedro-mlflow
    sets them only when it creates the experiment, so an experiment made before a tag was
    added, or before a metric was, gets it here. kedro-mlflow starts the run in its own
    ``before_pipeline_run``; tagging at the first node guarantees the run exists whatever order
    the hooks run in.
    """

    def __init__(self) -> None:
        self._context: Any = None
        self._tagged_run: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> None:
        import mlflow  # kedro-mlflow has imported it by now; not at start-up

        run = mlflow.active_run()
        if run is None or run.info.run_id == self._tagged_run or self._context is None:
            return
        tracking.set_tags(git_state(Path(self._context.project_path)))
        try:
            tracking.set_experiment_tags(experiment_tags(self._context))
        except Exception as error:  # the UI's presets are not worth a run
            logger.warning("Could not tag the MLflow experiment (%s); the run goes on", error)
        self._tagged_run = run.info.run_id


def experiment_tags(context: Any) -> dict[str, str]:
    """The experiment tags of ``mlflow.yml`` (kedro-mlflow's configuration on the context),
    each saved runs-table view with the evaluation's figures as its first columns
    (``with_metric_columns``)."""
    config = getattr(context, "mlflow", None)
    try:
        tags = config.tracking.experiment.create_experiment_kwargs.tags
    except AttributeError:  # kedro-mlflow not set up (tracking disabled)
        return {}
    return {
        str(k): with_metric_columns(str(v))
        if str(k).startswith(tracking.SAVED_VIEW_TAG_PREFIX)
        else str(v)
        for k, v in (tags or {}).items()
    }


def with_metric_columns(view: str) -> str:
    """A saved runs-table view (MLflow's view state, JSON) with the metric registry's scores
    and their half-widths (``hle.scoring.metrics.SCORE_COLUMNS``) as its first columns, shown
    and in that order; the view's own columns (training, counts) follow."""
    from hle_reasoning.hle.scoring.metrics import SCORE_COLUMNS  # numpy: not at start-up

    state = json.loads(view)
    first = [f"metrics.`{name}`" for name in SCORE_COLUMNS]
    for key in ("selectedColumns", "columnOrder"):
        state[key] = first + [c for c in state.get(key, []) if c not in first]
    return json.dumps(state)


class KedroMlflowHook:
    """kedro-mlflow's tracking hook, imported when a session first calls it.

    Registered last in ``settings.HOOKS`` (so called first, where Kedro calls a plugin's hook)
    in place of the one kedro-mlflow registers itself (``DISABLE_HOOKS_FOR_PLUGINS``). It
    delegates every call to ``hle_reasoning.mlflow_hook.BatchedParamsMlflowHook``: kedro-mlflow's
    hook with each node's parameters logged in one MLflow call. Importing the settings therefore
    imports neither MLflow nor kedro-mlflow.
    """

    def __init__(self) -> None:
        self._hook: Any = None

    @property
    def hook(self) -> Any:
        if self._hook is None:
            from hle_reasoning.mlflow_hook import BatchedParamsMlflowHook

            self._hook = BatchedParamsMlflowHook()
        return self._hook

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self.hook.after_context_created(context)

    @hook_impl
    def after_catalog_created(  # noqa: PLR0913 (Kedro's hook specification)
        self,
        catalog: Any,
        conf_catalog: dict,
        conf_creds: dict,
        parameters: dict,
        save_version: str,
        load_versions: dict,
    ) -> None:
        self.hook.after_catalog_created(
            catalog, conf_catalog, conf_creds, parameters, save_version, load_versions
        )

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self.hook.before_pipeline_run(run_params, pipeline, catalog)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict, is_async: bool) -> None:
        self.hook.before_node_run(node, catalog, inputs, is_async)

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self.hook.after_pipeline_run(run_params, pipeline, catalog)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Any, catalog: Any
    ) -> None:
        self.hook.on_pipeline_error(error, run_params, pipeline, catalog)


class ReleaseRunHook:
    """After the pipeline, once kedro-mlflow has ended its run (``trylast``): the copies of that run
    still active in this process are taken off its stack (``tracking.release_ended_runs``), so a
    notebook's next ``session.run()`` starts a run of its own."""

    @hook_impl(trylast=True)
    def after_pipeline_run(
        self, run_params: dict, run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        tracking.release_ended_runs()

    @hook_impl(trylast=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Any, catalog: Any
    ) -> None:
        tracking.release_ended_runs()


class StudySummaryHook:
    """After a successful ``kedro run``: where the reports are, the headline numbers, what next.

    The numbers come from the typed summaries the nodes return (``hle_reasoning.summaries``),
    collected as the nodes finish. A run that leaves questions unanswered or unjudged (a server
    down, a failed request) is not a success: after the summary its MLflow run is set FAILED
    with the tags ``hle_reasoning.unanswered`` and ``hle_reasoning.unjudged`` (the counts), and
    ``IncompleteRunError`` ends the command with the counts and the command that finishes it
    (exit status 1): ``hle_reasoning.completeness``. A run stopped by an error gets the same
    tags where the counts can be known (``on_pipeline_error``).
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._mlflow_run: str | None = None
        self._training: TrainingSummary | None = None
        self._variants: dict[str, VariantRun] = {}
        self._comparison: PairedComparison | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._started = time.monotonic()
        self._mlflow_run = None
        self._mlflow_experiment = None
        self._training = None
        self._variants = {}
        self._comparison = None
        self._counts: dict[str, tuple[int, int, int]] = {}
        self._wanted: dict[tuple[str, str], Any] = {}

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> None:
        import mlflow

        run = mlflow.active_run()
        if run is not None and self._mlflow_run is None:
            self._mlflow_run = run.info.run_id
            self._mlflow_experiment = run.info.experiment_id

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any, inputs: dict, outputs: dict) -> None:
        from hle_reasoning.hle.scoring.comparison import PairedComparison  # numpy: not at start-up

        for name, value in (outputs or {}).items():
            self._counts.update(completeness(name, value))
            self._wanted.update(wanted_rows(name, value))  # seen before the store saves it
            if isinstance(value, TrainingSummary):
                self._training = value
            elif isinstance(value, VariantRun):
                self._variants[value.variant] = value
            elif (
                isinstance(value, list) and value and all(isinstance(v, VariantRun) for v in value)
            ):
                self._variants.update({v.variant: v for v in value})
            elif isinstance(value, PairedComparison):
                self._comparison = value

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        elapsed = time.monotonic() - self._started
        reports = sorted(
            {
                str(path)
                for name in pipeline.all_outputs()
                for path in dataset_paths(catalog, name)
                if "08_reporting" in str(path)
            }
        )
        # A pipeline run with its missing inputs' producers (cli.py) also names __default__.
        names = [n for n in run_params.get("pipeline_names") or [] if n != "__default__"]
        lines = [
            f"hle-reasoning: {', '.join(names or ['the whole study'])} finished in {_duration(elapsed)}"
        ]
        if reports:
            lines.append("Reports:")
            lines += [f"  {p}" for p in reports]
        headline = self.headline_lines()
        if headline:
            lines.append(f"Headline (MLflow run {self._mlflow_run or 'not tracked'}):")
            lines += headline
        lines += [
            "Compare runs:  mlflow ui --backend-store-uri sqlite:///mlflow.db   "
            f"(then {runs_table_url(self._mlflow_experiment, _saved_view(self._mlflow_experiment))})",
            "See the graph: kedro viz run",
        ]
        click.echo("\n".join(["", *lines, ""]))
        self.refuse_incomplete(names)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Any, catalog: Any
    ) -> None:
        """A run stopped by an error: its MLflow run gets the ``unanswered`` / ``unjudged`` count
        tags where they can be known (``completeness.counts_on_disk``; the predictions' counts
        where the scoring node ran)."""
        known = getattr(self, "_counts", {})  # the scoring node's, where it ran
        counts = {**counts_on_disk(getattr(self, "_wanted", {}), catalog), **known}
        tags = tag_stopped_run(counts, self._mlflow_run)
        if tags:
            logger.info("The stopped run's MLflow run %s is tagged %s", self._mlflow_run, tags)

    def refuse_incomplete(self, pipelines: list[str]) -> None:
        """Raise :class:`~hle_reasoning.completeness.IncompleteRunError` (its MLflow run FAILED,
        tagged with the counts) when a question is left unanswered or unjudged."""
        refuse_incomplete(self._counts, self._mlflow_run, pipelines)

    def headline_lines(self) -> list[str]:
        """The training run and each evaluated variant, from the summaries the nodes returned."""
        lines = [f"  {self._training.headline()}"] if self._training is not None else []
        if self._variants:
            from hle_reasoning.pipelines.evaluation.plan import STUDY_VARIANTS

            # Baseline, fine-tuned, then the comparison models in their configured order.
            order = sorted(
                self._variants,
                key=lambda v: (v not in STUDY_VARIANTS, v if v in STUDY_VARIANTS else ""),
            )
            lines.append(VariantRun.header())
            lines += [self._variants[v].headline() for v in order]
            lines += [note for v in order for note in self._variants[v].notes()]
        if self._comparison is not None:
            lines.append(self._comparison.headline())
        return lines


def dataset_paths(catalog: Any, name: str) -> list[Path]:
    """The file of a dataset, or the files of a dataset with one file per variant (a
    ``PartitionedDataset``: its partitions written so far)."""
    path = dataset_path(catalog, name)
    if path is None:
        return []
    dataset = catalog.get(name)
    suffix = getattr(dataset, "_filename_suffix", None)
    if suffix is None:
        return [path]
    try:
        return [Path(f"{path}/{partition}{suffix}") for partition in dataset.load()]
    except Exception:  # nothing written yet, or unreadable: not listed
        return []


def runs_table_url(
    experiment_id: str | None, view: str | None = None, ui: str = "http://127.0.0.1:5000"
) -> str:
    """The MLflow UI's runs table of the experiment, in its model-training view
    (``workflowType``; MLflow 3.17 opens every experiment on its GenAI pages otherwise) and with
    the saved view ``view`` (the experiment's columns, ``tracking.SAVED_VIEW_TAG_PREFIX``)."""
    if experiment_id is None:
        return ui
    query = "workflowType=machine_learning" + (f"&viewStateShareKey={view}" if view else "")
    return f"{ui}/#/experiments/{experiment_id}/runs?{query}"


def _saved_view(experiment_id: str | None) -> str | None:
    """The experiment's saved runs-table view (None without one, or when MLflow cannot say)."""
    if experiment_id is None:
        return None
    import mlflow

    try:
        tags = mlflow.MlflowClient().get_experiment(experiment_id).tags
    except Exception:  # the link without the view still opens the runs table
        return None
    return tracking.saved_view_key(tags)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"
