"""Who answers a variant: its ``evaluation.answering`` block, and the server it names."""

from __future__ import annotations

import logging
from typing import Any

from hle_reasoning.config import (
    AnsweringConfig,
    ConfigError,
    EvaluationConfig,
    GenerationConfig,
    parse_or_raise,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints, env_prefix
from hle_reasoning.modeling import serving

logger = logging.getLogger(__name__)


def answering_for(answering_config: dict[str, Any] | None, variant: str) -> AnsweringConfig:
    """The ``evaluation.answering.<variant>`` block (``local`` when the variant has none)."""
    params = (answering_config or {}).get(variant) or {}
    if isinstance(params, AnsweringConfig):  # parsed once by the preflight hook
        return params
    return parse_or_raise(AnsweringConfig, params, f"evaluation.answering.{variant}")


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
) -> serving.Endpoint:
    """The server and model that answer ``name``: credentials/environment first, then conf."""
    parameter = parameter or f"evaluation.answering.{name}"
    problems = endpoint_problems(answering, endpoints, name, parameter)
    if problems:
        raise ConfigError(problems, header=f"{name} is answered by the openai backend, but:")
    found = endpoints.endpoint(name)
    return serving.Endpoint(
        base_url=found.base_url or answering.base_url,
        model=found.model or answering.model,
        api_key=found.api_key,
    )


def served_answerer(
    answering_config: dict[str, Any] | None,
    endpoints: AnswerEndpoints | None,
    generation: GenerationConfig,
    variant: str,
) -> serving.EndpointAnswerer | None:
    """The answerer of a variant with the ``openai`` backend (``None`` for ``local``)."""
    answering = answering_for(answering_config, variant)
    if answering.backend != "openai":
        return None
    endpoints = endpoints or AnswerEndpoints()
    answerer = serving.EndpointAnswerer(
        served_endpoint(answering, endpoints, variant),
        generation,
        answering,
        parameter=f"evaluation.answering.{variant}",
    )
    logger.info(
        "%s: answering through %r, %d request(s) at a time (key from %s)",
        variant,
        answerer,
        answering.concurrency,
        endpoints.endpoint(variant).api_key_source,
    )
    return answerer
