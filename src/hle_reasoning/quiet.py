"""Third-party console messages a user cannot act on, each silenced at the narrowest place.

* mlflow's "Add type hints to the `predict` method" ``UserWarning``, raised when kedro-mlflow
  defines its ``KedroPipelineModel`` (a class of a plugin, not the project's). mlflow raises it
  inside its own ``catch_warnings(); simplefilter("once", UserWarning)``, which overrides any
  ``warnings`` filter, so it is dropped where Kedro's logging receives warnings: a filter on the
  ``py.warnings`` logger that matches this message only.
* bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" (an optional CPU
  kernel from the hub; the fallback is used): a filter on its ``bitsandbytes.backends.cpu.ops``
  logger that matches this message only.
* transformers' "`is_gradient_checkpointing` is deprecated" ``FutureWarning``, raised inside
  transformers and TRL when the trainer starts (nothing in the project calls it): the same
  ``py.warnings`` filter, this message only.
* kedro-viz's "Workflow tracking is disabled during partial pipeline runs" on every run with
  ``--pipelines`` or a node filter (its run-events file is for full runs only; nothing to do):
  a filter on its ``kedro_viz.integrations.kedro.run_hooks`` logger.
* MLflow's INFO lines ("Creating initial MLflow database tables..."), printed by the console
  handler MLflow attaches to its own logger: ``MLFLOW_LOGGING_LEVEL`` defaults to WARNING.
* math-verify's "Timeout during comparison" lines are handled where math-verify is called
  (:mod:`hle_reasoning.hle.judge.symbolic`): a comparison that timed out does not decide.

Every other warning, the project's own included, is shown as before. Which lines reach the
console at all (the project's progress, every warning, no INFO line of a library) is
``conf/logging.yml``'s business; the full log is in ``hle_reasoning.log``.
"""

from __future__ import annotations

import logging
import os
import sys


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
                    "UserWarning: Add type hints to the `predict` method",
                    "FutureWarning: `is_gradient_checkpointing` is deprecated"),
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    "kedro_viz.integrations.kedro.run_hooks": ("Workflow tracking is disabled during partial pipeline runs",),
}  # fmt: skip


def install() -> None:
    """Send Python warnings through logging (``py.warnings``) and attach the filters (idempotent)."""
    # As Kedro's own rich handler does, which conf/logging.yml replaces.
    logging.captureWarnings(True)
    # MLflow gives its logger a console handler of its own when it is imported, which prints its
    # database set-up at INFO; its warnings stay. Imported already (by a Kedro plugin) or not yet.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if "mlflow" in sys.modules:
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"])
    for name, fragments in SILENCED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(*fragments))
