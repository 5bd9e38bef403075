"""The preflight: what would stop a run, found before its first node from the validated
parameter blocks and the environment, every problem at once (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl


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
    answer_endpoints: Any = None,
) -> list[str]:
    """What would stop this run, found from config and environment alone (no downloads).

    ``blocks``: the parameter blocks the run reads (default: every block ``params`` holds), each
    parsed whole (types, unknown keys, ranges); ``judge_endpoint``: where an ``llm`` judge would
    send requests (default: from the environment); ``answer_endpoints``: where ``openai``
    variants and comparison models are asked (``None``: the run answers no question).
    """
    return preflight(
        params,
        hle_source,
        uses_model,
        uses_device,
        blocks=blocks,
        judge_endpoint=judge_endpoint,
        answer_endpoints=answer_endpoints,
    )[1]


def preflight(
    params: dict[str, Any],
    hle_source: str | None,
    uses_model: bool,
    uses_device: bool = True,
    *,
    blocks: list[str] | None = None,
    judge_endpoint: Any = None,
    answer_endpoints: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """The raw ``params``' blocks validated (a block with problems is left out) and every
    problem ``preflight_problems`` lists: the blocks' own, then the world's
    (``world_problems``). A ``kedro run`` validates its blocks itself (Kedro builds the
    node arguments annotated with them); this is for a run Kedro refused (``cli.py`` lists
    every problem at once) and for checking a configuration without a run."""
    from hle_reasoning.config import BLOCKS, TINY, parse_blocks

    if blocks is None:
        blocks = [name for name in BLOCKS if name in params]
    parsed, problems = parse_blocks(params, blocks)
    model = params.get("model") or {}
    evaluation = parsed.get("evaluation")
    problems += world_problems(
        hle_source,
        name_or_path=model.get("name_or_path", TINY),
        device=str(model.get("device", "auto")),
        uses_model=uses_model,
        uses_device=uses_device,
        training=parsed.get("training"),
        distributed=parsed.get("distributed"),
        model=parsed.get("model"),
        judge=evaluation.judge if evaluation is not None else None,
        evaluation=evaluation,
        processes=(params.get("distributed") or {}).get("num_processes", 1),
        judge_endpoint=judge_endpoint,
        answer_endpoints=answer_endpoints,
    )
    return parsed, problems


def world_problems(
    hle_source: str | None,
    *,
    name_or_path: Any,
    device: str,
    uses_model: bool,
    uses_device: bool,
    training: Any = None,
    distributed: Any = None,
    model: Any = None,
    judge: Any = None,
    evaluation: Any = None,
    processes: Any = None,
    judge_endpoint: Any = None,
    answer_endpoints: Any = None,
) -> list[str]:
    """What the valid blocks ask of the world and the world lacks: the hub token, the model's
    access, a CUDA GPU, the processes' share of the batch, the accelerate config, the judge's and
    the answering servers' keys. ``training`` ... ``evaluation``: the run's validated blocks
    (``None``: the run does not read it); ``processes``: ``distributed.num_processes`` as
    written (checked against the batch even when the distributed block has problems)."""
    from hle_reasoning import hub
    from hle_reasoning.config import TINY
    from hle_reasoning.config.distributed import world_size_problems
    from hle_reasoning.hle.data.schema import is_hub_id
    from hle_reasoning.modeling import packaged

    problems: list[str] = []
    if hle_source and is_hub_id(hle_source) and not hub.token():
        problems.append(
            f"hle_source is the gated hub dataset {hle_source!r} but HF_TOKEN is not set (nor a "
            f"token saved by `hf auth login`): accept its terms at "
            f"https://huggingface.co/datasets/{hle_source}, then {hub.LOGIN}; "
            "or pass a local export with --params hle_source=PATH."
        )
    name = name_or_path
    if (
        uses_model
        and name != TINY
        and is_hub_id(name)
        and not packaged.is_packaged(name)
        and not Path(name).exists()
        and (problem := hub.model_access_problem(name))
    ):
        problems.append(problem)
    if uses_model and isinstance(name, str) and packaged.is_packaged(name):
        try:
            packaged.gguf_path(packaged.PACKAGED[name])
        except packaged.PackagedModelError as error:
            problems.append(str(error))
    if uses_device and device.startswith("cuda") and not _cuda_available():
        import torch

        problems.append(
            f"model.device is {device!r} but torch {torch.__version__} sees no CUDA GPU: run on a GPU "
            "machine with a CUDA build of torch, or use the default setup (without --env paper)."
        )
    if distributed is not None:
        processes = distributed.num_processes
    if training is not None and isinstance(processes, int) and processes > 1:
        problems += world_size_problems(training.grpo, processes)
    if distributed is not None and distributed.config_file is not None:
        from hle_reasoning.modeling.distributed import accelerate_problems

        problems += accelerate_problems(distributed, training, model, gpus=_cuda_available())
    if judge is not None and judge.kind == "llm":
        problems += judge_problems(judge, judge_endpoint)
    if evaluation is not None and answer_endpoints is not None:
        from hle_reasoning.pipelines.evaluation.backends import answering_problems, engine_problems

        problems += answering_problems(evaluation, answer_endpoints)
        problems += engine_problems(evaluation, name)
    return problems


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
    """Before the first node: tokens, hub access, the GPU, the judge's and the servers' keys,
    the image limit and the focus split, every problem at once, read-only.

    Kedro has built and validated the parameter blocks the run's nodes are annotated with before
    this hook runs (a block that cannot work stops the run there, ``cli.py`` lists its problems);
    the hook reads those blocks from the catalog and checks only what needs the world.
    """

    # First of every before_pipeline_run (kedro-mlflow's starts the MLflow run): a refused run
    # leaves no MLflow run behind.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        from hle_reasoning.config import TINY

        datasets = set(pipeline.datasets())

        def block(name: str) -> Any:
            """The run's validated block ``name`` (None: no node of the run reads it)."""
            from pydantic import BaseModel

            value = _param(catalog, f"params:{name}") if f"params:{name}" in datasets else None
            return value if isinstance(value, BaseModel) else None

        evaluation = block("evaluation")
        uses_model = bool({"base_model", "tokenizer"} & datasets) or "params:model" in datasets
        # Loading weights needs the device; data_processing only needs the tokenizer.
        uses_device = bool({"base_model", "params:model", "params:model.device"} & datasets)
        hle_source = _param(catalog, "params:hle_source") if "hle_questions" in datasets else None
        endpoint = _param(catalog, "judge_endpoint") if "judge_endpoint" in datasets else None
        answers = _param(catalog, "answer_endpoints") if "answer_endpoints" in datasets else None
        problems = world_problems(
            hle_source,
            name_or_path=_param(catalog, "params:model.name_or_path") or TINY,
            device=str(_param(catalog, "params:model.device") or "auto"),
            uses_model=uses_model,
            uses_device=uses_device,
            training=block("training"),
            distributed=block("distributed"),
            model=block("model"),
            judge=evaluation.judge if evaluation is not None else block("evaluation.judge"),
            evaluation=evaluation,
            judge_endpoint=endpoint,
            answer_endpoints=answers,
        )
        problems += source_problems(hle_source)
        problems += image_limit_problems(_param(catalog, "params:max_image_pixels"))
        if not problems and "select_focus_node" in {n.name for n in pipeline.nodes}:
            # The split the run would write, from the questions (a local export: no download).
            trains = "train_grpo_node" in {n.name for n in pipeline.nodes}
            training = block("training") if trains else None
            problems += focus_problems(catalog, block("data_processing"), training)
        if problems:
            raise PreflightError(
                "This run cannot work as configured; no node was run and no output written:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )


def image_limit_problems(limit: Any) -> list[str]:
    """Set the run's ``max_image_pixels`` (every image opened is bounded by it, in this process
    and the workers it starts); what is wrong with the value, if anything."""
    from hle_reasoning.hle.data import images

    try:
        images.set_max_pixels(images.DEFAULT_MAX_PIXELS if limit is None else limit)
    except ValueError as error:
        return [f"{error} (conf/base/parameters.yml)"]
    return []


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


def focus_problems(catalog: Any, processing: Any, training: Any = None) -> list[str]:
    """The focus split the run would write, checked before it is written: every focus category
    present, a test question, and (when the run trains: ``training`` is its block) one optimizer
    step of training questions. ``processing``: the ``data_processing`` block. A hub source is
    left to the node (checking it here would download it twice)."""
    from hle_reasoning.hle.data import sampling
    from hle_reasoning.hle.data.schema import is_hub_id

    source = _param(catalog, "params:hle_source")
    if processing is None or not source or is_hub_id(str(source)):
        return []
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
