"""Project hooks: tag MLflow runs with the git commit; close every run with a short summary."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.hooks import hook_impl

from hle_reasoning import tracking
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
        import mlflow  # kedro-mlflow has imported it by now; not at start-up

        run = mlflow.active_run()
        if run is None or run.info.run_id == self._tagged_run or self._project_path is None:
            return
        tracking.set_tags(git_state(self._project_path))
        self._tagged_run = run.info.run_id


class StudySummaryHook:
    """After a successful ``kedro run``: where the reports are, the headline numbers, what next.

    The numbers come from the typed summaries the nodes return (``hle_reasoning.summaries``),
    collected as the nodes finish.
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
        from hle_reasoning.hle.scoring.comparison import PairedComparison  # scipy: not at start-up

        for value in (outputs or {}).values():
            if isinstance(value, TrainingSummary):
                self._training = value
            elif isinstance(value, VariantRun):
                self._variants[value.variant] = value
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
                for path in (_filepath(catalog, name) for name in pipeline.all_outputs())
                if path and "08_reporting" in str(path)
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
            f"(then {runs_table_url(self._mlflow_experiment)})",
            "See the graph: kedro viz run",
        ]
        click.echo("\n".join(["", *lines, ""]))

    def headline_lines(self) -> list[str]:
        """The training run and each evaluated variant, from the summaries the nodes returned."""
        lines = [f"  {self._training.headline()}"] if self._training is not None else []
        if self._variants:
            lines.append(VariantRun.HEADER)
            lines += [self._variants[v].headline() for v in sorted(self._variants)]
            lines += [note for v in sorted(self._variants) for note in self._variants[v].notes()]
        if self._comparison is not None:
            lines.append(self._comparison.headline())
        return lines


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


def runs_table_url(experiment_id: str | None, ui: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's runs table of the experiment: MLflow 3.17 opens every experiment on its
    GenAI pages unless the address asks for the model-training view (``workflowType``)."""
    if experiment_id is None:
        return ui
    return f"{ui}/#/experiments/{experiment_id}?workflowType=machine_learning"


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
    return preflight(
        params,
        hle_source,
        uses_model,
        uses_device,
        blocks=blocks,
        judge_endpoint=judge_endpoint,
    )[1]


def preflight(
    params: dict[str, Any],
    hle_source: str | None,
    uses_model: bool,
    uses_device: bool = True,
    *,
    blocks: list[str] | None = None,
    judge_endpoint: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """The run's parameter blocks parsed (each once; a block with problems is left out) and
    every problem ``preflight_problems`` lists."""
    from hle_reasoning.config import BLOCKS, TINY, parse_blocks
    from hle_reasoning.config.distributed import world_size_problems
    from hle_reasoning.hle.data.schema import is_hub_id
    from hle_reasoning.modeling import packaged
    from hle_reasoning.modeling.models import hf_token

    if blocks is None:
        blocks = [name for name in BLOCKS if name in params]
    parsed, problems = parse_blocks(params, blocks)
    token = hf_token()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if hle_source and is_hub_id(hle_source) and not token:
        problems.append(
            f"hle_source is the gated hub dataset {hle_source!r} but HF_TOKEN is not set: accept its "
            f"terms at https://huggingface.co/datasets/{hle_source}, then `export HF_TOKEN=hf_...`; "
            "or pass a local export with --params hle_source=PATH."
        )
    model = params.get("model") or {}
    name = model.get("name_or_path", TINY)
    if uses_model and name != TINY and is_hub_id(name):
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
    if uses_model and isinstance(name, str) and packaged.is_packaged(name):
        try:
            packaged.gguf_path(packaged.PACKAGED[name])
        except packaged.PackagedModelError as error:
            problems.append(str(error))
    device = str(model.get("device", "auto"))
    if uses_device and device.startswith("cuda") and not _cuda_available():
        import torch

        problems.append(
            f"model.device is {device!r} but torch {torch.__version__} sees no CUDA GPU: run on a GPU "
            "machine with a CUDA build of torch, or use the default setup (without --env paper)."
        )
    training = parsed.get("training")
    processes = (params.get("distributed") or {}).get("num_processes", 1)
    if training is not None and isinstance(processes, int) and processes > 1:
        # Even when the distributed block has other problems: the processes it asks for.
        problems += world_size_problems(training.grpo, processes)
    scale = parsed.get("distributed")
    if scale is not None and scale.config_file is not None:
        from hle_reasoning.modeling.distributed import accelerate_problems

        problems += accelerate_problems(
            scale, training, parsed.get("model"), gpus=_cuda_available()
        )
    evaluation = parsed.get("evaluation")
    if evaluation is not None and evaluation.judge.kind == "llm":
        problems += judge_problems(evaluation.judge, judge_endpoint)
    return parsed, problems


def _cuda_available() -> bool:
    import torch  # only for a run that asks for CUDA or spreads over processes

    return torch.cuda.is_available()


def judge_problems(judge: Any, endpoint: Any = None) -> list[str]:
    """An ``llm`` judge without the key its endpoint needs (a local server needs none)."""
    from hle_reasoning.hle.judge.llm import credential_problems

    if endpoint is None:
        from hle_reasoning.datasets import JudgeEndpointDataset

        endpoint = JudgeEndpointDataset().load()
    label = f"evaluation.judge.kind is llm (the official judge, {judge.model_used(endpoint.model)})"
    problems = credential_problems(endpoint.api_key, endpoint.base_url or judge.llm.base_url)
    return [f"{label} but {problem}" for problem in problems]


class PreflightHook:
    """Before the first node: every parameter block the run reads, tokens, hub access, the GPU
    and the judge's credentials; every problem at once.

    Each block is parsed here, once per run, and every node receives the parsed blocks in place
    of the raw ``params:`` inputs (``params:evaluation.judge`` is the ``JudgeConfig``): Kedro lets
    ``before_node_run`` replace a node's inputs. The catalog keeps the raw parameters, so
    kedro-viz shows them and kedro-mlflow (whose ``before_node_run`` sees the inputs as loaded)
    logs every one as before.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, Any] = {}

    # First of every before_pipeline_run (kedro-mlflow's starts the MLflow run): a refused run
    # leaves no MLflow run behind.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from hle_reasoning.config import BLOCKS

        self._blocks = {}

        datasets = set(pipeline.datasets())
        read = {
            n.removeprefix("params:").split(".")[0] for n in datasets if n.startswith("params:")
        }
        blocks = [name for name in BLOCKS if name in read]  # in the order of the YAML files
        params = {name: _param(catalog, f"params:{name}") for name in blocks}
        if "model" not in params:
            params["model"] = _param(catalog, "params:model") or {}
        uses_model = bool({"base_model", "tokenizer"} & datasets) or "model" in blocks
        # Loading weights needs the device; data_processing only needs the tokenizer.
        uses_device = bool({"base_model", "params:model", "params:model.device"} & datasets)
        hle_source = _param(catalog, "params:hle_source") if "hle_questions" in datasets else None
        endpoint = _param(catalog, "judge_endpoint") if "judge_endpoint" in datasets else None
        parsed, problems = preflight(
            params,
            hle_source,
            uses_model,
            uses_device,
            blocks=blocks,
            judge_endpoint=endpoint,
        )
        self._blocks = {name: parsed[name] for name in blocks if name in parsed}
        problems += source_problems(hle_source)
        if not problems and "select_focus_node" in {n.name for n in pipeline.nodes}:
            # The split the run would write, from the questions (a local export: no download).
            trains = "train_grpo_node" in {n.name for n in pipeline.nodes}
            problems += focus_problems(catalog, parsed, trains=trains)
        if problems:
            raise PreflightError(
                "This run cannot work as configured; no node was run and no output written:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )

    def block(self, name: str) -> Any:
        """This run's parsed block ``name`` (None when the run does not read it or it is bad)."""
        return self._blocks.get(name)

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> dict[str, Any] | None:
        from hle_reasoning.config.study import typed_parameters

        return typed_parameters(self._blocks, inputs) or None


def source_problems(hle_source: str | None) -> list[str]:
    """A local ``hle_source`` that does not exist (the hub id and the default are checked apart)."""
    from hle_reasoning.hle.data.schema import is_hub_id

    if not hle_source or is_hub_id(hle_source) or Path(hle_source).exists():
        return []
    return [
        f"hle_source is {hle_source!r}, which does not exist: pass an existing .jsonl, .json or "
        ".parquet export (--params hle_source=PATH), 'cais/hle' for the hub, or leave it out for "
        "the bundled sample."
    ]


def focus_problems(catalog: Any, parsed: dict[str, Any], *, trains: bool) -> list[str]:
    """The focus split the run would write, checked before it is written: every focus category
    present, a test question, and (when the run trains) one optimizer step of training questions.
    ``parsed``: the run's parsed blocks. A hub source is left to the node (checking it here would
    download it twice)."""
    from hle_reasoning.hle.data import sampling
    from hle_reasoning.hle.data.schema import is_hub_id

    source = _param(catalog, "params:hle_source")
    processing = parsed.get("data_processing")
    if processing is None or not source or is_hub_id(str(source)):
        return []
    training = parsed.get("training") if trains else None
    min_train = training.grpo.prompts_per_step if training is not None else 1
    questions = catalog.load("hle_questions")  # an invalid export raises its own HLEDataError
    split = processing.split
    sizes = sampling.category_test_sizes(
        questions, split.confidence_level, split.margin_of_error, split.proportion, split.z
    )
    return sampling.focus_problems(
        questions["category"], processing.focus_categories, sizes, min_train
    )


def _param(catalog: Any, name: str) -> Any:
    try:
        return catalog.load(name)
    except Exception:  # a parameter this run does not define
        return None


class WorkerMachineHook:
    """Several machines: a ``kedro run`` with ``distributed.machine_rank`` > 0 runs workers only.

    Before anything else of the session (MLflow included) it serves machine 0's spread nodes
    (``hle_reasoning.modeling.distributed.serve``) and then ends the command: the pipeline, the
    catalog saves and MLflow are machine 0's alone. Machine 0 closes the worker machines' loops
    when its run ends, successfully or not. Machine 0 takes the block the preflight parsed (one
    parse per run); a worker machine, which runs no pipeline, parses it here.
    """

    def __init__(self, preflight: PreflightHook | None = None) -> None:
        self._preflight = preflight
        self._raw: dict[str, Any] | None = None  # machine 0's distributed block, as written

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        from hle_reasoning.config import DistributedConfig, parse
        from hle_reasoning.modeling.distributed import serve

        self._raw = None
        params = context.params.get("distributed")
        if not isinstance(params, dict) or int(params.get("num_machines") or 1) <= 1:
            return
        if str(params.get("machine_rank") or 0) == "0":
            self._raw = params
            return
        config, problems = parse(DistributedConfig, params, DistributedConfig.PATH)
        if problems or config is None:
            return  # the preflight lists the block's problems with every other one
        if config.is_main_machine:  # a rank written another way (0.0)
            self._raw = params
            return
        click.echo(
            f"hle-reasoning: machine {config.machine_rank} of {config.num_machines} runs "
            f"{config.processes_per_machine} worker process(es) for machine 0 "
            f"({config.main_process_ip}:{config.main_process_port}); no pipeline, MLflow run or "
            "output here."
        )
        served = serve(config)
        click.echo(f"hle-reasoning: machine 0's run ended; this machine served {served} node(s).")
        raise SystemExit(0)

    def _main_machine_config(self) -> Any:
        """Machine 0's parsed block: the preflight's, or parsed here when the run reads none."""
        if self._raw is None:
            return None
        config = self._preflight.block("distributed") if self._preflight is not None else None
        if config is None:
            from hle_reasoning.config import DistributedConfig, parse

            config, _ = parse(DistributedConfig, self._raw, DistributedConfig.PATH)
        return config if config is not None and config.is_main_machine else None

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        config = self._main_machine_config()
        if config is not None:
            from hle_reasoning.modeling.distributed import close_workers

            close_workers(config)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Any, catalog: Any
    ) -> None:
        config = self._main_machine_config()
        if config is None:
            return
        from hle_reasoning.modeling.distributed import close_workers

        try:  # the worker machines may be gone already: do not wait long for them
            close_workers(config, rendezvous_timeout_s=min(60.0, config.timeout_s))
        except Exception as closing:  # the run's own error is the one to report
            logger.warning("Could not close the worker machines' loops: %s", closing)
