"""Datasets that load models' tokenizers (and, for training and evaluation, models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro.utils import find_kedro_project

from hle_reasoning.datasets.atomic import write_directory_atomically
from hle_reasoning.modeling.models import BuiltModel, load_token_counter


class TokenizerDataset(AbstractDataset[None, Any]):
    """Load-only: the tokenizer of ``name_or_path`` (``tiny``, a local directory or a hub id), to
    count tokens with (``modeling.models.count_tokens``).

    YAML::

        tokenizer:
          type: hle_reasoning.datasets.TokenizerDataset
          name_or_path: ${globals:model.name_or_path}
    """

    def __init__(self, *, name_or_path: str, metadata: dict[str, Any] | None = None) -> None:
        self._name_or_path = name_or_path
        self.metadata = metadata

    def load(self) -> Any:
        return load_token_counter(self._name_or_path)

    def save(self, data: Any) -> None:
        raise DatasetError("TokenizerDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {"name_or_path": self._name_or_path}


class BaseModelDataset(AbstractDataset[Any, str]):
    """The study's base model: saved weights for a built model, else a reference to it.

    Saving a ``BuiltModel`` writes ``save_pretrained`` output (model and processor) and the
    model's other ``files`` to ``path`` atomically; saving a string (hub id or directory)
    records only the reference. Loading returns the ``name_or_path`` to hand to
    ``load_model``/``load_processor``.

    ``model_ref.json`` holds ``name_or_path`` as written (a folder as an absolute path) and, for a
    folder inside the Kedro project that holds ``path``, ``in_project``: the folder relative to
    the project's root, which loading prefers. A copied or moved project thus loads its own
    copy of the model, not the original's; a file without ``in_project`` (older, or a folder
    outside the project) is read as written.

    YAML::

        base_model:
          type: hle_reasoning.datasets.BaseModelDataset
          path: data/06_models/base_model
    """

    REF_FILE = "model_ref.json"

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> str:
        ref = self._path / self.REF_FILE
        if not ref.exists():
            raise DatasetError(
                f"{ref} does not exist: run the training pipeline first "
                "(`kedro run --pipelines training`), which prepares the base model."
            )
        content = json.loads(ref.read_text())
        inside, project = content.get("in_project"), self._project()
        if inside and project is not None:
            return str(project / inside)
        return content["name_or_path"]

    def save(self, data: Any) -> None:
        if isinstance(data, BuiltModel):
            ref = {"name_or_path": str(self._path), "built_from": data.built_from}
            inside = self._in_project(self._path)
        elif isinstance(data, str):
            ref = {"name_or_path": data, "built_from": None}
            inside = self._in_project(Path(data)) if Path(data).is_dir() else None
        else:
            raise DatasetError(
                f"BaseModelDataset saves a BuiltModel or a name_or_path string, got {type(data).__name__}"
            )
        if inside is not None:
            ref["in_project"] = inside

        def write(folder: Path) -> None:
            if isinstance(data, BuiltModel):
                data.model.save_pretrained(folder)
                data.processor.save_pretrained(folder)
                for name, text in data.files.items():
                    (folder / name).write_text(text)
            (folder / self.REF_FILE).write_text(json.dumps(ref, indent=2) + "\n")

        write_directory_atomically(self._path, write)

    def _exists(self) -> bool:
        return (self._path / self.REF_FILE).exists()

    def _project(self) -> Path | None:
        """The root of the Kedro project that holds ``path`` (None outside any)."""
        return find_kedro_project(self._path.resolve())

    def _in_project(self, folder: Path) -> str | None:
        """``folder`` relative to the project's root, when inside it."""
        project = self._project()
        if project is None:
            return None
        try:
            return folder.resolve().relative_to(project.resolve()).as_posix()
        except ValueError:
            return None

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class LoraAdapterDataset(AbstractDataset[Any, str]):
    """The trained LoRA adapter: a directory that ``peft.PeftModel.from_pretrained`` loads.

    Saving a PEFT model (anything with ``save_pretrained``) writes its adapter to ``path``
    atomically: into a temporary sibling first, renamed into place only once complete, so a failed
    run leaves the previous adapter intact. Loading returns the directory as a ``str``::

        PeftModel.from_pretrained(load_model(catalog.load("base_model")), catalog.load("lora_adapter"))

    YAML::

        lora_adapter:
          type: hle_reasoning.datasets.LoraAdapterDataset
          path: data/06_models/lora_adapter
    """

    CONFIG_FILE = "adapter_config.json"

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> str:
        if not (self._path / self.CONFIG_FILE).exists():
            raise DatasetError(
                f"{self._path / self.CONFIG_FILE} does not exist: train an adapter first "
                "(`kedro run --pipelines training`)."
            )
        return str(self._path)

    def save(self, data: Any) -> None:
        if not hasattr(data, "save_pretrained"):
            raise DatasetError(f"LoraAdapterDataset saves a PEFT model, got {type(data).__name__}")

        def write(folder: Path) -> None:
            data.save_pretrained(folder)
            if not (folder / self.CONFIG_FILE).exists():
                raise DatasetError(
                    f"{type(data).__name__}.save_pretrained wrote no {self.CONFIG_FILE}"
                )

        write_directory_atomically(self._path, write)

    def _exists(self) -> bool:
        return (self._path / self.CONFIG_FILE).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
