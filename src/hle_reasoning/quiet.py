"""Third-party console messages a user cannot act on, each silenced at the narrowest place.

* mlflow's "Add type hints to the `predict` method" ``UserWarning``, raised when kedro-mlflow
  defines its ``KedroPipelineModel`` (a class of a plugin, not the project's). mlflow raises it
  inside its own ``catch_warnings(); simplefilter("once", UserWarning)``, which overrides any
  ``warnings`` filter, so it is dropped where Kedro's logging receives warnings: a filter on the
  ``py.warnings`` logger that matches this message only.
* bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" (an optional CPU
  kernel from the hub; the fallback is used): a filter on its ``bitsandbytes.backends.cpu.ops``
  logger that matches this message only.
* math-verify's "Timeout during comparison" lines are handled where math-verify is called
  (:mod:`hle_reasoning.hle.judge.symbolic`): a comparison that timed out does not decide.

Every other warning, the project's own included, is shown as before.
"""

from __future__ import annotations

import logging


class DropMessages(logging.Filter):
    """Drops the records of one logger whose message contains one of ``fragments``."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is not one of ours
            return True
        return not any(fragment in message for fragment in self.fragments)


SILENCED = {
    "py.warnings": ("UserWarning: \x1b[33mAdd type hints to the `predict` method",
                    "UserWarning: Add type hints to the `predict` method"),
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
}  # fmt: skip


def install() -> None:
    """Attach the filters (idempotent)."""
    for name, fragments in SILENCED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(*fragments))
