"""Who answers a variant: its ``evaluation.answering`` block, and the server it names."""

from __future__ import annotations

import logging
from typing import Any

from hle_reasoning.config import AnsweringConfig, ConfigError, GenerationConfig, parse_or_raise
from hle_reasoning.datasets.endpoints import AnswerEndpoints, env_prefix
from hle_reasoning.modeling import serving

logger = logging.getLogger(__name__)


def answering_for(answering_config: dict[str, Any] | None, variant: str) -> AnsweringConfig:
    """The ``evaluation.answering.<variant>`` block (``local`` when the variant has none)."""
    params = (answering_config or {}).get(variant) or {}
    if isinstance(params, AnsweringConfig):  # parsed once by the preflight hook
        return params
    return parse_or_raise(AnsweringConfig, params, f"evaluation.answering.{variant}")


def served_endpoint(
    answering: AnsweringConfig, endpoints: AnswerEndpoints, name: str
) -> serving.Endpoint:
    """The server and model that answer ``name``: credentials/environment first, then conf."""
    found = endpoints.endpoint(name)
    base_url, model = found.base_url or answering.base_url, found.model or answering.model
    problems = [
        f"evaluation.answering.{name}.{what} is not set (nor {env_prefix(name)}{what.upper()}): "
        f"{hint}"
        for what, value, hint in (
            ("base_url", base_url, "give the server's URL, e.g. http://127.0.0.1:8000/v1"),
            ("model", model, "give the served model's name, as the server's /v1/models lists it"),
        )
        if not value
    ]
    if problems:
        raise ConfigError(problems, header=f"{name} is answered by the openai backend, but:")
    return serving.Endpoint(base_url=base_url, model=model, api_key=found.api_key)


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
        served_endpoint(answering, endpoints, variant), generation, answering
    )
    logger.info(
        "%s: answering through %r, %d request(s) at a time (key from %s)",
        variant,
        answerer,
        answering.concurrency,
        endpoints.endpoint(variant).api_key_source,
    )
    return answerer
