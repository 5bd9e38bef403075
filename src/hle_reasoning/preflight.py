"""The preflight: what would stop a run, found before its first node from config and
environment alone, every problem at once; and the hook that parses each parameter block once
per run and hands the parsed blocks to the nodes."""

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
    """The run's parameter blocks parsed (each once; a block with problems is left out) and
    every problem ``preflight_problems`` lists."""
    from hle_reasoning import hub
    from hle_reasoning.config import BLOCKS, TINY, parse_blocks
    from hle_reasoning.config.distributed import world_size_problems
    from hle_reasoning.hle.data.schema import is_hub_id
    from hle_reasoning.modeling import packaged

    if blocks is None:
        blocks = [name for name in BLOCKS if name in params]
    parsed, problems = parse_blocks(params, blocks)
    if hle_source and is_hub_id(hle_source) and not hub.token():
        problems.append(
            f"hle_source is the gated hub dataset {hle_source!r} but HF_TOKEN is not set (nor a "
            f"token saved by `hf auth login`): accept its terms at "
            f"https://huggingface.co/datasets/{hle_source}, then {hub.LOGIN}; "
            "or pass a local export with --params hle_source=PATH."
        )
    model = params.get("model") or {}
    name = model.get("name_or_path", TINY)
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
    if evaluation is not None and answer_endpoints is not None:
        from hle_reasoning.pipelines.evaluation.backends import answering_problems, engine_problems

        problems += answering_problems(evaluation, answer_endpoints)
        problems += engine_problems(evaluation, name)
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
        answers = _param(catalog, "answer_endpoints") if "answer_endpoints" in datasets else None
        parsed, problems = preflight(
            params,
            hle_source,
            uses_model,
            uses_device,
            blocks=blocks,
            judge_endpoint=endpoint,
            answer_endpoints=answers,
        )
        self._blocks = {name: parsed[name] for name in blocks if name in parsed}
        problems += source_problems(hle_source)
        problems += image_limit_problems(_param(catalog, "params:max_image_pixels"))
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
