"""Every parameter block of the study, named in one place.

``BLOCKS`` maps each top-level key of the parameters to its model. In a ``kedro run`` Kedro
builds the blocks that node arguments are annotated with; ``parse_blocks`` validates raw
parameters with the same models, every problem of every block at once (``cli.py`` lists them
when Kedro refuses a run; ``tests/test_config.py`` checks conf/ with it). A new block is one
class and one line here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hle_reasoning.config.data_processing import DataProcessingConfig
from hle_reasoning.config.distributed import DistributedConfig
from hle_reasoning.config.evaluation import EvaluationConfig
from hle_reasoning.config.model import ModelConfig
from hle_reasoning.config.parsing import parse
from hle_reasoning.config.training import TrainingConfig

BLOCKS: dict[str, type] = {
    "model": ModelConfig,
    "data_processing": DataProcessingConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "distributed": DistributedConfig,
}


def parse_blocks(
    params: Mapping[str, Any], names: Iterable[str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The named blocks of ``params`` (all of ``BLOCKS`` by default) parsed, and every problem.

    A block that has problems is left out of the returned mapping.
    """
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for name in names if names is not None else BLOCKS:
        block, found = parse(BLOCKS[name], params.get(name), name)
        problems += found
        if block is not None:
            parsed[name] = block
    return parsed, problems
