"""Kedro datasets of the project: HLE exports, tokenizers, models, and atomic file writers."""

from hle_reasoning.datasets.atomic import (
    CSVDataset,
    JSONDataset,
    MatplotlibDataset,
    ParquetDataset,
    TextDataset,
)
from hle_reasoning.datasets.endpoints import AnswerEndpointsDataset
from hle_reasoning.datasets.evaluation import (
    JSONLinesShards,
    JSONLinesShardsDataset,
    JSONLinesStore,
    JudgeEndpointDataset,
    MlflowChildRunDataset,
)
from hle_reasoning.datasets.hle import HLEDataset
from hle_reasoning.datasets.models import BaseModelDataset, LoraAdapterDataset, TokenizerDataset

__all__ = [
    "AnswerEndpointsDataset",
    "BaseModelDataset",
    "CSVDataset",
    "HLEDataset",
    "JSONDataset",
    "JSONLinesShards",
    "JSONLinesShardsDataset",
    "JSONLinesStore",
    "JudgeEndpointDataset",
    "LoraAdapterDataset",
    "MatplotlibDataset",
    "MlflowChildRunDataset",
    "ParquetDataset",
    "TextDataset",
    "TokenizerDataset",
]
