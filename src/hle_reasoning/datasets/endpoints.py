"""The answering endpoints: where a variant served by an OpenAI-compatible server is asked, and
with which key (credentials or environment; never a parameter file, a repr or a log line)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from hle_reasoning.datasets.evaluation import JudgeEndpoint

_FIELDS = ("api_key", "base_url", "model")


def env_prefix(name: str) -> str:
    """The environment prefix of one answering endpoint: ``HLE_ANSWER_<NAME>_``."""
    return "HLE_ANSWER_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() + "_"


@dataclass(frozen=True)
class AnswerEndpoints:
    """Per-name endpoint settings from credentials (``{name: {api_key, base_url, model}}``) and
    the environment. The keys stay out of the repr."""

    credentials: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def endpoint(self, name: str) -> JudgeEndpoint:
        """The endpoint of ``name``: each field from ``credentials[name]``, else
        ``HLE_ANSWER_<NAME>_<FIELD>``; the key also from ``HLE_ANSWER_API_KEY`` or
        ``OPENAI_API_KEY``. A field found nowhere is ``None`` (the configuration decides)."""
        entry = self.credentials.get(name) or {}
        found: dict[str, str | None] = {}
        source = "none"
        for name_of_field in _FIELDS:
            variables = [env_prefix(name) + name_of_field.upper()]
            if name_of_field == "api_key":
                variables += ["HLE_ANSWER_API_KEY", "OPENAI_API_KEY"]
            value = entry.get(name_of_field)
            where = "credentials" if value else "none"
            for variable in variables:
                if value:
                    break
                value, where = os.environ.get(variable) or None, f"env {variable}"
            found[name_of_field] = value or None
            if name_of_field == "api_key" and value:
                source = where
        return JudgeEndpoint(
            base_url=found["base_url"],
            api_key=found["api_key"],
            model=found["model"],
            api_key_source=source,
        )


class AnswerEndpointsDataset(AbstractDataset[None, AnswerEndpoints]):
    """Load-only: the answering endpoints' keys (and optional base URL / model overrides).

    ``credentials`` is a Kedro credentials entry mapping a variant or comparison model's name to
    ``{api_key, base_url, model}`` (each optional); without it the environment is read
    (``HLE_ANSWER_<NAME>_API_KEY``, ``..._BASE_URL``, ``..._MODEL``, then ``HLE_ANSWER_API_KEY``
    and ``OPENAI_API_KEY`` for the key).

    YAML::

        answer_endpoints:
          type: hle_reasoning.datasets.AnswerEndpointsDataset
          credentials: hle_answer   # optional: {baseline: {api_key: ..., base_url: ...}, ...}
    """

    def __init__(
        self, *, credentials: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        entries = dict(credentials or {})
        for name, entry in entries.items():
            unknown = sorted(set(entry or {}) - set(_FIELDS)) if isinstance(entry, dict) else None
            if unknown is None or unknown:
                raise DatasetError(
                    f"answering credentials for {name!r} must be a mapping with api_key, "
                    f"base_url and/or model (got {sorted(entry) if unknown else type(entry).__name__})"
                )
        self._endpoints = AnswerEndpoints({k: dict(v or {}) for k, v in entries.items()})
        self.metadata = metadata

    def load(self) -> AnswerEndpoints:
        return self._endpoints

    def save(self, data: Any) -> None:
        raise DatasetError("AnswerEndpointsDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        # Never the keys, not even masked: Kedro may log this description.
        return {"credentials": sorted(self._endpoints.credentials)}
