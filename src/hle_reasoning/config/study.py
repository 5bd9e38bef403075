"""Every parameter block of the study, parsed in one place.

``BLOCKS`` maps each top-level key of the parameters to its dataclass; the preflight hook parses
the blocks of the pipelines being run once per run, lists every problem of every block at once
before any node runs, and hands the nodes the parsed blocks (``typed_parameters``). A new block
is one class and one line here.
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


def typed_parameters(blocks: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The parsed value of each parameter name ``params:<block>[.<key>...]`` whose block is in
    ``blocks``: the block itself, or the field its dotted keys name (``params:evaluation.judge``
    is ``blocks["evaluation"].judge``). Other names (``params:hle_source``, datasets) are left out.
    """
    typed: dict[str, Any] = {}
    for name in names:
        if not name.startswith("params:"):
            continue
        block, *keys = name.removeprefix("params:").split(".")
        if block not in blocks:
            continue
        value = blocks[block]
        try:
            for key in keys:
                value = value[key] if isinstance(value, Mapping) else getattr(value, key)
        except (AttributeError, KeyError, TypeError):
            continue  # a key with a dot of its own: the node gets the raw value
        typed[name] = value
    return typed
