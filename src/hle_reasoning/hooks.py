"""Project hooks: tag MLflow runs with the git commit; close every run with a short summary."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import mlflow
from kedro.framework.hooks import hook_impl

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


class GitCommitHook:
    """Sets ``mlflow.source.git.commit`` (shown by the MLflow UI), ``git_commit`` and ``git_dirty``.

    kedro-mlflow starts the run in its own ``before_pipeline_run``; tagging at the first node
    guarantees the run exists whatever order the hooks run in.
    """

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._tagged_run: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> None:
        run = mlflow.active_run()
        if run is None or run.info.run_id == self._tagged_run or self._project_path is None:
            return
        tags = git_state(self._project_path)
        if tags:
            mlflow.set_tags(tags)
        self._tagged_run = run.info.run_id


class StudySummaryHook:
    """After a successful ``kedro run``: where the reports are, the headline numbers, what next."""

    def __init__(self) -> None:
        self._started = 0.0
        self._mlflow_run: str | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._started = time.monotonic()
        self._mlflow_run = None

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> None:
        run = mlflow.active_run()
        if run is not None and self._mlflow_run is None:
            self._mlflow_run = run.info.run_id

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        elapsed = time.monotonic() - self._started
        reports = sorted(
            {
                str(path)
                for path in (_filepath(catalog, name) for name in pipeline.all_outputs())
                if path and "08_reporting" in str(path)
            }
        )
        lines = [
            f"hle-reasoning: {', '.join(run_params.get('pipeline_names') or ['the whole study'])} finished in {_duration(elapsed)}"
        ]
        if reports:
            lines.append("Reports:")
            lines += [f"  {p}" for p in reports]
        headline = _headline_lines(self._mlflow_run)
        if headline:
            lines.append(f"Headline (MLflow run {self._mlflow_run}):")
            lines += headline
        lines += [
            "Compare runs:  mlflow ui --backend-store-uri sqlite:///mlflow.db   (http://127.0.0.1:5000)",
            "See the graph: kedro viz run",
        ]
        click.echo("\n".join(["", *lines, ""]))


def _filepath(catalog: Any, name: str) -> Path | None:
    try:
        dataset = catalog.get(name) if hasattr(catalog, "get") else None
    except Exception:  # a dataset the catalog cannot describe is simply not listed
        return None
    path = getattr(dataset, "_filepath", None) or getattr(dataset, "_path", None)
    if not path:
        return None
    path = Path(str(path))
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _headline_lines(run_id: str | None) -> list[str]:
    """Evaluation per variant and the training run, from the kedro run's MLflow metrics."""
    if not run_id:
        return []
    try:
        metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    except Exception:  # MLflow disabled or unreachable: the summary goes without numbers
        return []
    lines = []
    if "training.steps" in metrics:
        peak = metrics.get(
            "training.memory.peak_cuda_allocated_gb", metrics.get("training.memory.peak_rss_gb")
        )
        lines.append(
            f"  training: {int(metrics['training.steps'])} GRPO steps, "
            f"{_fmt(metrics.get('training.mean_step_time_s'))} s/step, "
            f"final reward {_fmt(metrics.get('training.reward'), 3)}, "
            f"peak memory {_fmt(peak)} GB (eq. (6): {_fmt(metrics.get('training.memory.eq6_total_gb'))} GB)"
        )
    variants = sorted(
        {m.group(1) for k in metrics if (m := re.fullmatch(r"evaluation\.(\w+)\.accuracy", k))}
    )
    if variants:
        lines.append(
            f"  {'variant':<12}{'n':>5}  {'accuracy (%)':>16}  {'calibration error (%)':>22}  {'all bins (%)':>12}"
        )
    for variant in variants:
        get = lambda name, v=variant: metrics.get(f"evaluation.{v}.{name}")  # noqa: E731
        accuracy = f"{_fmt(get('accuracy'))} ± {_fmt(get('accuracy_ci'))}"
        lines.append(
            f"  {variant:<12}{_fmt(get('n'), 0):>5}  {accuracy:>16}  "
            f"{_fmt(get('calibration_error')):>22}  {_fmt(get('calibration_error_all_bins')):>12}"
        )
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


class PreflightError(RuntimeError):
    """The run cannot work as configured; raised before any node runs."""


def preflight_problems(
    params: dict[str, Any],
    hle_source: str | None,
    uses_model: bool,
    uses_device: bool = True,
    *,
    blocks: list[str] | None = None,
    judge_endpoint: Any = None,
) -> list[str]:
    """What would stop this run, found from config and environment alone (no downloads).

    ``blocks``: the parameter blocks the run reads (default: every block ``params`` holds), each
    parsed whole (types, unknown keys, ranges); ``judge_endpoint``: where an ``llm`` judge would
    send requests (default: from the environment).
    """
    import torch

    from hle_reasoning.config import BLOCKS, TINY, parse_blocks
    from hle_reasoning.hle.schema import is_hub_id as is_hub_dataset
    from hle_reasoning.modeling.models import hf_token
    from hle_reasoning.modeling.models import is_hub_id as is_hub_model

    if blocks is None:
        blocks = [name for name in BLOCKS if name in params]
    parsed, problems = parse_blocks(params, blocks)
    token = hf_token()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if hle_source and is_hub_dataset(hle_source) and not token:
        problems.append(
            f"hle_source is the gated hub dataset {hle_source!r} but HF_TOKEN is not set: accept its "
            f"terms at https://huggingface.co/datasets/{hle_source}, then `export HF_TOKEN=hf_...`; "
            "or pass a local export with --params hle_source=PATH."
        )
    model = params.get("model") or {}
    name = model.get("name_or_path", TINY)
    if uses_model and name != TINY and is_hub_model(name):
        if not token and not offline:
            problems.append(
                f"model.name_or_path is the gated hub model {name!r} but HF_TOKEN is not set: request "
                f"access at https://huggingface.co/{name}, then `export HF_TOKEN=hf_...`."
            )
        elif offline:
            problems.append(
                f"HF_HUB_OFFLINE=1 but model.name_or_path is the hub model {name!r}: unset HF_HUB_OFFLINE "
                "or point model.name_or_path at a local copy."
            )
    device = str(model.get("device", "auto"))
    if uses_device and device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(
            f"model.device is {device!r} but torch {torch.__version__} sees no CUDA GPU: run on a GPU "
            "machine with a CUDA build of torch, or use the default setup (without --env paper)."
        )
    evaluation = parsed.get("evaluation")
    if evaluation is not None and evaluation.judge.kind == "llm":
        problems += judge_problems(evaluation.judge, judge_endpoint)
    return problems


def judge_problems(judge: Any, endpoint: Any = None) -> list[str]:
    """An ``llm`` judge without the key its endpoint needs (a local server needs none)."""
    if endpoint is None:
        from hle_reasoning.datasets import JudgeEndpointDataset

        endpoint = JudgeEndpointDataset().load()
    base_url = endpoint.base_url or judge.llm.base_url
    if endpoint.api_key or base_url:
        return []
    return [
        f"evaluation.judge.kind is llm (the official judge, {judge.model_used(endpoint.model)}) "
        "but no API key is set: `export HLE_JUDGE_API_KEY=sk-...` (or OPENAI_API_KEY), or put "
        "api_key under hle_judge in conf/local/credentials.yml (see README, Evaluation); or set "
        "evaluation.judge.llm.base_url to a local OpenAI-compatible server. To judge offline "
        "instead: --params evaluation.judge.kind=rules"
    ]


class PreflightHook:
    """Before the first node: every parameter block the run reads, tokens, hub access, the GPU
    and the judge's credentials; every problem at once."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from hle_reasoning.config import BLOCKS

        datasets = set(pipeline.datasets())
        blocks = sorted(
            {n.removeprefix("params:").split(".")[0] for n in datasets if n.startswith("params:")}
            & set(BLOCKS)
        )
        params = {name: _param(catalog, f"params:{name}") for name in blocks}
        if "model" not in params:
            params["model"] = _param(catalog, "params:model") or {}
        uses_model = bool({"base_model", "tokenizer"} & datasets) or "model" in blocks
        # Loading weights needs the device; data_processing only needs the tokenizer.
        uses_device = bool({"base_model", "params:model", "params:model.device"} & datasets)
        hle_source = _param(catalog, "params:hle_source") if "hle_questions" in datasets else None
        endpoint = _param(catalog, "judge_endpoint") if "judge_endpoint" in datasets else None
        problems = preflight_problems(
            params,
            hle_source,
            uses_model,
            uses_device,
            blocks=blocks,
            judge_endpoint=endpoint,
        )
        if problems:
            raise PreflightError(
                "This run cannot work as configured; no node was run and no output written:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )


def _param(catalog: Any, name: str) -> Any:
    try:
        return catalog.load(name)
    except Exception:  # a parameter this run does not define
        return None
