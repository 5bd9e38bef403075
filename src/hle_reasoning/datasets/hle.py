"""``HLEDataset``: an HLE export (bundled sample, local file or the hub), validated at load."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from hle_reasoning.hle.data.schema import is_hub_id, read_export, read_hub, validate_hle

logger = logging.getLogger(__name__)


class HLEDataset(AbstractDataset[None, pd.DataFrame]):
    """Load-only dataset for Humanity's Last Exam in the cais/hle schema.

    ``source`` is a local ``.jsonl``/``.json``/``.parquet`` export or a hub id (``cais/hle``,
    gated: needs ``HF_TOKEN``). Rows are validated on load (see
    ``hle_reasoning.hle.data.schema.validate_hle``); a bad export fails the run before any node
    runs, so nothing is written.

    YAML::

        hle_questions:
          type: hle_reasoning.datasets.HLEDataset
          source: ${runtime_params:hle_source,data/01_raw/hle_sample.jsonl}

    Python::

        HLEDataset(source="data/01_raw/hle_sample.jsonl").load()
    """

    def __init__(
        self,
        *,
        source: str,
        split: str = "test",
        validate: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(source, str) or not source.strip():
            raise DatasetError(
                "hle_source is empty: pass a .jsonl/.json/.parquet export, 'cais/hle', or leave "
                "it out for the bundled sample."
            )
        self._source = source
        self._split = split
        self._validate = validate
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if is_hub_id(self._source):
            frame = read_hub(self._source, self._split)
        else:
            frame = read_export(self._source, collect=self._validate)
        if self._validate:
            frame = validate_hle(frame, self._source)
        frame.attrs["source"] = self._source
        logger.info("Loaded %d HLE questions from %s", len(frame), self._source)
        return frame

    def save(self, data: None) -> None:
        raise DatasetError(
            "HLEDataset is read-only: raw exports are never modified by the project."
        )

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source, "split": self._split, "validate": self._validate}
