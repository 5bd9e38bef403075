"""The project's Kedro context: the parameters as the YAML holds them, parsed by the project."""

from __future__ import annotations

from typing import Any

from kedro.framework.context import KedroContext


class ProjectContext(KedroContext):
    """Kedro's context with Kedro's own parameter instantiation left out.

    Kedro 1.7 builds a node's dataclass-annotated ``params:`` inputs in the catalog as
    ``cls(**raw)``: one level deep (nested blocks stay mappings), with Python's ``TypeError`` for a
    misspelt key, and into the catalog that kedro-viz shows and kedro-mlflow logs from. Here the
    catalog keeps the raw parameters; ``preflight.PreflightHook`` parses every block once per run
    (every problem with its key path) and hands the nodes the parsed blocks.
    """

    @property
    def params(self) -> dict[str, Any]:
        return self.config_loader["parameters"]
