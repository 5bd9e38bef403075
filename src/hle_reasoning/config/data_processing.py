"""The ``data_processing`` block (conf/base/parameters_data_processing.yml): the split."""

from __future__ import annotations

from dataclasses import dataclass, field

from hle_reasoning.config.parsing import Block, ConfigError, check
from hle_reasoning.hle.data import sampling

_OPEN_UNIT = check(lambda v: 0 < v < 1, "set it strictly between 0 and 1")


@dataclass(frozen=True, kw_only=True)
class SplitConfig(Block):
    """Cochran's test size per category, with finite-population correction."""

    PATH = "data_processing.split"
    confidence_level: float = field(default=sampling.CONFIDENCE_LEVEL, metadata=_OPEN_UNIT)
    margin_of_error: float = field(default=sampling.MARGIN_OF_ERROR, metadata=_OPEN_UNIT)
    proportion: float = field(default=sampling.PROPORTION, metadata=_OPEN_UNIT)
    z: float | None = field(default=None, metadata=check(lambda v: v > 0, "set it > 0 or null"))
    seed: int = 42


@dataclass(frozen=True, kw_only=True)
class DataProcessingConfig(Block):
    PATH = "data_processing"
    split: SplitConfig = field(default_factory=SplitConfig)
    focus_categories: tuple[str, ...] = field(
        default=("Math",), metadata=check(bool, "name at least one category (the proposal: Math)")
    )


class FocusSplitError(ConfigError):
    """The focus categories' split cannot feed training or evaluation."""

    HEADER = (
        "The focus split cannot work; focus_train and focus_test were not written. Change these "
        "(conf/base/parameters_data_processing.yml, or --params data_processing....=...):"
    )

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, header=self.HEADER)
