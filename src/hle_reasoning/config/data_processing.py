"""The ``data_processing`` block (conf/base/parameters_data_processing.yml): the split."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from hle_reasoning.config.parsing import Block, ConfigError, check
from hle_reasoning.hle.data import sampling

_OPEN_UNIT = check(lambda v: 0 < v < 1, "set it strictly between 0 and 1")


class SplitConfig(Block):
    """Cochran's test size per category, with finite-population correction."""

    PATH: ClassVar[str] = "data_processing.split"
    confidence_level: Annotated[float, _OPEN_UNIT] = sampling.CONFIDENCE_LEVEL
    margin_of_error: Annotated[float, _OPEN_UNIT] = sampling.MARGIN_OF_ERROR
    proportion: Annotated[float, _OPEN_UNIT] = sampling.PROPORTION
    z: Annotated[float | None, check(lambda v: v > 0, "set it > 0 or null")] = None
    seed: int = 42


class DataProcessingConfig(Block):
    PATH: ClassVar[str] = "data_processing"
    split: SplitConfig = Field(default_factory=SplitConfig)
    focus_categories: Annotated[
        tuple[str, ...],
        check(bool, "name at least one category (the proposal: Math)"),
    ] = ("Math",)


class FocusSplitError(ConfigError):
    """The focus categories' split cannot feed training or evaluation."""

    HEADER = (
        "The focus split cannot work; focus_train and focus_test were not written. Change these "
        "(conf/base/parameters_data_processing.yml, or --params data_processing....=...):"
    )

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, header=self.HEADER)
