"""Kedro datasets of the project: HLE exports, tokenizers, models, atomic file writers, MLflow.

Each dataset is imported when the catalog (or code) first asks for it, not with this package:
the pipeline modules import some of its modules, and importing them must not import MLflow,
matplotlib or the ML libraries (``tests/test_startup.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "AnswerEndpointsDataset": "endpoints",
    "BaseModelDataset": "models",
    "CSVDataset": "atomic",
    "HLEDataset": "hle",
    "JSONDataset": "atomic",
    "JSONLinesShards": "evaluation",
    "JSONLinesStore": "evaluation",
    "JudgeEndpointDataset": "evaluation",
    "LoraAdapterDataset": "models",
    "MatplotlibDataset": "atomic",
    "MlflowChildRunDataset": "evaluation",
    "MlflowMetricsHistoryDataset": "mlflow_metrics",
    "ParquetDataset": "atomic",
    "TextDataset": "atomic",
    "TokenizerDataset": "models",
    "VariantStore": "stores",
    "Wanted": "stores",
}

__all__ = [
    "AnswerEndpointsDataset",
    "BaseModelDataset",
    "CSVDataset",
    "HLEDataset",
    "JSONDataset",
    "JSONLinesShards",
    "JSONLinesStore",
    "JudgeEndpointDataset",
    "LoraAdapterDataset",
    "MatplotlibDataset",
    "MlflowChildRunDataset",
    "MlflowMetricsHistoryDataset",
    "ParquetDataset",
    "TextDataset",
    "TokenizerDataset",
    "VariantStore",
    "Wanted",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


assert set(__all__) == set(_MODULES)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
