"""The study's configuration: every parameter block as a tree of frozen pydantic models.

Nodes, the preflight hook and the library take these objects (``ModelConfig``,
``DataProcessingConfig``, ``TrainingConfig``, ``EvaluationConfig``, ``DistributedConfig``) rather
than raw dicts: Kedro builds them for the node arguments annotated with them, before the run.
Unknown keys are errors naming the full key path and the closest valid name
(``config.parsing.problems``). Defaults equal the values conf/base documents
(tests/test_config.py holds the two together).
"""

from hle_reasoning.config.data_processing import DataProcessingConfig, SplitConfig
from hle_reasoning.config.distributed import DistributedConfig
from hle_reasoning.config.evaluation import (
    AnsweringConfig,
    ComparisonConfig,
    ComparisonModelConfig,
    EvaluationConfig,
    GenerationConfig,
    JudgeConfig,
    LLMJudgeSettings,
    MetricsConfig,
    ReportConfig,
)
from hle_reasoning.config.model import TINY, ModelConfig, QuantizationConfig, TinyConfig
from hle_reasoning.config.parsing import ConfigError, parse, parse_or_raise
from hle_reasoning.config.study import BLOCKS, parse_blocks
from hle_reasoning.config.training import (
    CheckpointsConfig,
    CompletionsConfig,
    GRPOSettings,
    LoraSettings,
    PromptConfig,
    TrainingConfig,
)

__all__ = [
    "AnsweringConfig",
    "DistributedConfig",
    "BLOCKS",
    "TINY",
    "CheckpointsConfig",
    "ComparisonConfig",
    "ComparisonModelConfig",
    "CompletionsConfig",
    "ConfigError",
    "DataProcessingConfig",
    "EvaluationConfig",
    "GRPOSettings",
    "GenerationConfig",
    "JudgeConfig",
    "LLMJudgeSettings",
    "LoraSettings",
    "MetricsConfig",
    "ModelConfig",
    "PromptConfig",
    "QuantizationConfig",
    "ReportConfig",
    "SplitConfig",
    "TinyConfig",
    "TrainingConfig",
    "parse",
    "parse_blocks",
    "parse_or_raise",
]
