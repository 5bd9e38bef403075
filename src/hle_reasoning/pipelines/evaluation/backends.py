"""Who answers a variant: its ``evaluation.answering`` block, and the server it names."""

from __future__ import annotations

import logging
from typing import Any

from hle_reasoning.config import (
    AnsweringConfig,
    ConfigError,
    EvaluationConfig,
    GenerationConfig,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints, env_prefix
from hle_reasoning.modeling import openai_backend

logger = logging.getLogger(__name__)


def answering_for(
    answering_config: dict[str, AnsweringConfig] | None, variant: str
) -> AnsweringConfig:
    """The ``evaluation.answering.<variant>`` block (``local`` when the variant has none)."""
    return (answering_config or {}).get(variant) or AnsweringConfig()


def endpoint_problems(
    answering: AnsweringConfig, endpoints: AnswerEndpoints, name: str, parameter: str
) -> list[str]:
    """What the ``openai`` answering of ``name`` lacks (a server, a served model), each naming
    ``parameter.<field>``, the variable that may set it instead, and what to set."""
    found = endpoints.endpoint(name)
    return [
        f"{parameter}.{what} is not set (nor {env_prefix(name)}{what.upper()}): {hint}"
        for what, value, hint in (
            (
                "base_url",
                found.base_url or answering.base_url,
                "give the server's URL, e.g. http://127.0.0.1:8000/v1",
            ),
            (
                "model",
                found.model or answering.model,
                "give the served model's name, as the server's /v1/models lists it",
            ),
        )
        if not value
    ]


def answering_problems(
    evaluation: EvaluationConfig, endpoints: AnswerEndpoints | None
) -> list[str]:
    """Every ``openai`` variant and comparison model without a server or a model (the
    preflight's check: before any node runs)."""
    endpoints = endpoints or AnswerEndpoints()
    problems = []
    for variant, answering in evaluation.answering.items():
        if answering.backend == "openai":
            where = f"evaluation.answering.{variant}"
            found = endpoint_problems(answering, endpoints, variant, where)
            problems += [f"{variant} is answered by the openai backend, but {p}" for p in found]
    for i, entry in enumerate(evaluation.comparison_models):
        where = f"evaluation.comparison_models[{i}]"
        found = endpoint_problems(entry.answering, endpoints, entry.name, where)
        problems += [f"comparison model {entry.name!r}: {p}" for p in found]
    return problems


def served_endpoint(
    answering: AnsweringConfig,
    endpoints: AnswerEndpoints,
    name: str,
    parameter: str | None = None,
) -> openai_backend.Endpoint:
    """The server and model that answer ``name``: credentials/environment first, then conf."""
    parameter = parameter or f"evaluation.answering.{name}"
    problems = endpoint_problems(answering, endpoints, name, parameter)
    if problems:
        raise ConfigError(problems, header=f"{name} is answered by the openai backend, but:")
    found = endpoints.endpoint(name)
    return openai_backend.Endpoint(
        base_url=found.base_url or answering.base_url,
        model=found.model or answering.model,
        api_key=found.api_key,
    )


def served_answerer(
    answering: AnsweringConfig,
    endpoints: AnswerEndpoints | None,
    generation: GenerationConfig,
    variant: str,
    image_position: str = "auto",
    parameter: str | None = None,
    chat_template_date: str | None = None,
) -> openai_backend.EndpointAnswerer | None:
    """The answerer of a variant with the ``openai`` backend (``None`` for another backend);
    ``parameter``: where its block is (``evaluation.answering.<variant>`` by default).
    ``chat_template_date`` (``model.chat_template_date``) is sent to the server's chat template
    only where the block opts in (``chat_template_kwargs: true``): a hosted API may refuse it.

    ``image_position`` (``model.image_position``): ``auto`` keeps HLE's request order (the image
    after the question), right for API models; the served model's family is not known here, so
    a Llama 3.2 Vision server needs ``before`` (the ``engine`` backend decides it by itself)."""
    from hle_reasoning.hle.data.prompts import image_goes_first

    if answering.backend != "openai":
        return None
    parameter = parameter or f"evaluation.answering.{variant}"
    endpoints = endpoints or AnswerEndpoints()
    answerer = openai_backend.EndpointAnswerer(
        served_endpoint(answering, endpoints, variant, parameter),
        generation,
        answering,
        parameter=parameter,
        image_first=image_goes_first(image_position, cross_attention=False),
        chat_template_date=chat_template_date if answering.chat_template_kwargs else None,
    )
    logger.info(
        "%s: answering through %r, %d request(s) at a time (key from %s)",
        variant,
        answerer,
        answering.concurrency,
        endpoints.endpoint(variant).api_key_source,
    )
    return answerer


# --- The managed engine backend (``backend: engine``) -------------------------------------------


def serves_mllama(name_or_path: str) -> bool:
    """Whether the study's model is Llama 3.2 Vision (Mllama), decided without a download: the
    tiny model, a saved checkpoint's config.json, else a hub id's name."""
    from pathlib import Path

    from hle_reasoning.config import TINY
    from hle_reasoning.modeling import families, packaged

    if name_or_path == TINY:
        return True
    if packaged.is_packaged(name_or_path):
        return False
    if (Path(name_or_path) / "config.json").is_file():
        return families.family_of(name_or_path).name == families.MLLAMA
    name = str(name_or_path).lower()
    return "vision" in name and "llama" in name


def engine_problems(
    evaluation: EvaluationConfig, model_name: str, gpu: bool | None = None
) -> list[str]:
    """Every variant with ``backend: engine`` whose engine cannot serve here (the preflight's
    check, before any node runs): not installed, GPU-only without a GPU, vLLM with Mllama."""
    from hle_reasoning.modeling import engine_checks

    problems = []
    for variant, answering in evaluation.answering.items():
        if answering.backend == "engine":
            problems += engine_checks.engine_option_problems(
                answering.engine_options, f"evaluation.answering.{variant}"
            )
            refusals = engine_checks.engine_refusals(
                answering.engine,
                f"evaluation.answering.{variant}",
                mllama=serves_mllama(model_name),
                gpu=gpu,
            )
            if answering.fallback == "local" and answering.engine is not None:
                for refusal in refusals:
                    logger.warning("%s; answered in-process instead (fallback: local)", refusal)
            else:
                problems += refusals
            if not refusals and answering.engine == "transformers" and serves_mllama(model_name):
                warning = system_message_warning(
                    f"evaluation.answering.{variant}", evaluation.generation.system_role
                )
                if warning:
                    logger.warning("%s", warning)
    return problems


def system_message_warning(parameter: str, system_role: str) -> str | None:
    """The warning for ``transformers serve`` asked to serve Llama 3.2 Vision with the system
    prompt as a system message (``system_role`` ``system``, or ``auto`` for text questions), or
    ``None`` when the system prompt is a user turn.

    ``transformers serve`` (5.24, the pinned version) gives a vision-language model's chat
    template every message's content as a list of text parts, the system prompt's string
    included; Llama 3.2 Vision's released template writes the system message with ``|trim``,
    so the served prompt holds the list's Python text (``[{'type': 'text', 'text': ...}]``: 104
    prompt tokens instead of 88 for "What is 2 + 2?"). No server flag or request field avoids
    it (tests/modeling/test_engines.py checks it on a real server, and says when a transformers
    upgrade fixes it). A user turn's parts are written part by part, as in-process.
    """
    if system_role == "user":
        return None
    return (
        f"{parameter}.engine is transformers: `transformers serve` writes Llama 3.2 Vision's "
        "system message as a Python list ([{'type': 'text', 'text': ...}]) in place of the "
        f"system prompt (evaluation.generation.system_role is {system_role}), so these answers "
        "are not comparable with backend: local or engine: sglang; use engine: sglang on a GPU "
        "or backend: local (or evaluation.generation.system_role: user, the system prompt as "
        "a first user turn, which transformers serve writes as in-process)"
    )


def merged_checkpoint(base_model: str, adapter: str, model_config: Any, path: str) -> str:
    """The fine-tuned model as one checkpoint at ``path`` (what ``kedro run --pipelines serving``
    writes), merged now when missing or made from another base model, adapter or dtype."""
    import json
    from pathlib import Path

    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.modeling.generation import files_fingerprint, merge_adapter

    stamp = {
        "base_model": files_fingerprint(base_model),
        "adapter": files_fingerprint(adapter),
        "dtype": model_config.dtype,
    }
    marker = Path(path) / "merged_from.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return str(path)
    logger.info("Merging the LoRA adapter into %s for the serving engine", path)
    BaseModelDataset(path=str(path)).save(merge_adapter(base_model, adapter, model_config))
    marker.write_text(json.dumps(stamp, indent=2) + "\n")
    return str(path)


class EngineAnswerer(openai_backend.EndpointAnswerer):
    """The ``openai`` answerer asking a :class:`~hle_reasoning.modeling.engines.ManagedEngine`:
    the same requests; an engine that exits while answering ends the run with its log's tail.

    Its ``generation_key`` is the ``openai`` backend's (``openai_backend.endpoint_key``) with the engine
    (name, precision, options) in place of the server's URL, whose port changes at every start,
    and the weights' fingerprint in place of the served path: a rerun reuses every stored answer.
    Every request sends ``model.chat_template_date`` to the chat template (all three engines take
    ``chat_template_kwargs``), so served prompts write the in-process date.
    """

    def __init__(
        self,
        engine: Any,
        config: GenerationConfig,
        answering: AnsweringConfig,
        weights: str,
        *,
        parameter: str,
        image_first: bool = False,
        chat_template_date: str | None = None,
    ) -> None:
        super().__init__(
            openai_backend.Endpoint(base_url=engine.base_url, model=engine.model),
            config,
            answering,
            parameter=parameter,
            image_first=image_first,
            chat_template_date=chat_template_date,
        )
        self.engine = engine
        self.weights = weights

    def __repr__(self) -> str:
        return f"EngineAnswerer({self.engine.engine}, {self.engine.model!r})"

    @property
    def key(self) -> str:
        import json

        label = json.dumps(
            {
                "engine": self.engine.engine,
                "dtype": self.engine.dtype,
                "options": self.engine.options,
            },
            sort_keys=True,
        )
        return openai_backend.endpoint_key(
            openai_backend.Endpoint(base_url=f"engine:{label}", model=self.weights),
            self.config,
            self.answering,
            self.image_first,
            self.chat_template_date,
        )

    @property
    def answered_by(self) -> str:
        return f"engine:{self.engine.engine}:{self.engine.model}"

    def answer(self, row: Any) -> dict[str, Any] | None:
        """The ``openai`` backend's answer; when the request failed (``None``, or an error such
        as the ``openai`` backend's own stop after failures in a row) because the engine exited,
        the engine's failure with its log's tail instead."""
        if not self.engine.alive():
            raise self._exited()
        try:
            record = super().answer(row)
        except Exception:
            if self._engine_exited(timeout=10):
                raise self._exited() from None
            raise
        if record is None and self._engine_exited(timeout=1):
            raise self._exited()
        return record  # None: a transient failure of a live engine, left out as for openai

    def _engine_exited(self, timeout: float) -> bool:
        # Asked only once a request failed. A killed engine's connections can drop before its
        # exit is reaped, which on a loaded machine took longer than a second (the run then
        # reported an unreachable server instead of the engine's death): a failure that stops
        # the run waits up to 10 s for that, a transient one (left out, the run goes on) 1 s.
        try:
            self.engine.process.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - still running
            return False
        return True

    def _exited(self) -> Exception:
        code = self.engine.process.returncode
        return self.engine.failure(f"exited (code {code}) while answering")


def engine_answerer(
    answering: AnsweringConfig,
    generation: GenerationConfig,
    model_config: Any,
    base_model: str,
    adapter: str | None,
    variant: str,
) -> EngineAnswerer | None:
    """The answerer of a ``backend: engine`` variant, its engine not started yet (the engine
    serves ``base_model``, or for the fine-tuned variant the merged checkpoint, made when the
    engine starts); ``None`` when the engine is refused here and ``fallback`` is ``local``."""
    from datetime import datetime, timezone
    from pathlib import Path

    from hle_reasoning.hle.data.prompts import image_goes_first
    from hle_reasoning.modeling import engine_checks, engines
    from hle_reasoning.modeling.generation import files_fingerprint

    parameter = f"evaluation.answering.{variant}"
    refusals = engine_checks.engine_refusals(
        answering.engine, parameter, mllama=serves_mllama(base_model)
    )
    if refusals and answering.fallback == "local" and answering.engine is not None:
        logger.warning(
            "%s: %s; answering in-process instead (fallback: local)", variant, "; ".join(refusals)
        )
        # No engine answers this variant now: its MLflow run names none.
        engine_info_path(answering, variant).unlink(missing_ok=True)
        return None
    if refusals:
        raise ConfigError(refusals, header=f"{variant} cannot be answered by a managed engine:")
    served = answering.merged_model if adapter else base_model
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    engine = engines.ManagedEngine(
        engine=answering.engine,
        model=str(Path(served).resolve()) if Path(served).exists() or adapter else served,
        log_path=Path(answering.engine_log_dir) / f"{variant}-{answering.engine}-{stamp}.log",
        dtype=model_config.dtype,
        mllama=serves_mllama(base_model),
        device=model_config.device if answering.engine == "transformers" else "auto",
        options=dict(answering.engine_options),
        start_timeout_s=answering.start_timeout_s,
        port=engines.free_port(),
    )
    weights = f"{files_fingerprint(base_model)}+{files_fingerprint(adapter)}"
    image_first = image_goes_first(model_config.image_position, serves_mllama(base_model))
    return EngineAnswerer(
        engine,
        generation,
        answering,
        weights,
        parameter=parameter,
        image_first=image_first,
        chat_template_date=model_config.chat_template_date,
    )


def engine_info_path(answering: AnsweringConfig, variant: str) -> Any:
    """Where the engine that last answered ``variant`` is described (for its MLflow run)."""
    from pathlib import Path

    return Path(answering.engine_log_dir) / f"{variant}.engine.json"
