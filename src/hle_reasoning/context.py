"""The project's config loader: the catalog and the parameters read once per run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from kedro.config import OmegaConfigLoader


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader``, reading the catalog and the parameters once per process.

    A ``kedro run`` makes two loaders with the same settings (the project's check for missing
    upstream inputs, then the session's), and each merges every YAML file again on each read.
    Here a read of ``catalog`` or ``parameters`` is kept for the process, keyed by everything
    that decides it: the conf folder, the environments, the runtime parameters, the key's file
    patterns, the merge strategy, and the path, size and modification time of every file under
    the conf folder (an edited file is read again). Each read gets its own copy. Credentials,
    ``globals``, ``mlflow`` and remote conf folders are read as Kedro reads them.
    """

    _KEPT: ClassVar[dict[str, tuple[tuple, Any]]] = {}  # key -> (what decided it, its value)

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key not in ("catalog", "parameters") or key in self.data or self._protocol != "file":
            return super().__getitem__(key)
        files = sorted(
            (str(p), p.stat().st_mtime_ns, p.stat().st_size)
            for p in Path(self.conf_source).rglob("*")
            if p.is_file()
        )
        kept_key = (
            key,
            str(Path(self.conf_source).resolve()),
            self.env,
            self.base_env,
            self.default_run_env,
            repr(self.runtime_params),
            repr(self.config_patterns.get(key)),
            repr(self.merge_strategy.get(key)),
            tuple(files),
        )
        kept = self._KEPT.get(key)
        if kept is None or kept[0] != kept_key:
            kept = self._KEPT[key] = (kept_key, super().__getitem__(key))
        return copy.deepcopy(kept[1])
