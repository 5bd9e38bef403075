"""What the preflight asks of a serving engine before any node runs (``backend: engine``): why
it cannot serve the model here (not installed, GPU-only without a GPU, a model family it cannot
serve) and which pass-through option its own argument parser would misread. The engines
themselves, and how they are started and stopped, are ``modeling.engines``."""

from __future__ import annotations

import importlib.util
from typing import Any

from hle_reasoning.modeling.engines import ENGINES


def engine_option_problems(options: dict[str, Any] | None, parameter: str) -> list[str]:
    """Each pass-through option of ``options`` (``<parameter>.engine_options``) that the engine's
    own argument parser would misread: a text value starting with ``-`` (read as an option, not
    as the value of ``--<name>``), and a name written with its dashes. Numbers are fine
    (``-1`` is read as a negative number)."""
    problems = []
    for name, value in (options or {}).items():
        where = f"{parameter}.engine_options.{name}"
        if str(name).startswith("-"):
            problems.append(
                f"{where}: write the option's name without its dashes "
                f"({str(name).lstrip('-')!r}); the project adds them"
            )
        if isinstance(value, str) and value.startswith("-"):
            flag = "--" + str(name).lstrip("-").replace("_", "-")
            problems.append(
                f"{where} is {value!r}, which starts with '-': the engine's argument parser "
                f"would read it as an option of its own, not as the value of {flag}; pass a "
                "value that does not start with '-' (a path as ./" + value + ")"
            )
    return problems


def engine_refusals(
    engine: str | None, parameter: str, *, mllama: bool, gpu: bool | None = None
) -> list[str]:
    """Why ``engine`` cannot serve the model here, each naming ``parameter`` and what to use.

    ``gpu``: whether a CUDA GPU is visible (``None``: asked of torch, only for a GPU-only engine).
    """
    if engine is None:
        return [
            f"{parameter}.backend is engine but {parameter}.engine is not set: "
            f"set it to one of {', '.join(ENGINES)}"
        ]
    kind = ENGINES[engine]
    problems = []
    if kind.name == "vllm" and mllama:
        problems.append(
            f"{parameter}.engine is vllm, which cannot serve Llama 3.2 Vision (Mllama; vLLM "
            "dropped it after 0.10.2): use engine: sglang on a GPU, engine: transformers, or "
            "backend: local"
        )
    missing = [m for m in kind.modules if importlib.util.find_spec(m) is None]
    if missing:
        problems.append(
            f"{parameter}.engine is {engine} but {', '.join(missing)} is not installed in this "
            f"environment: `{kind.install}`, or use engine: transformers or backend: local"
        )
    if kind.gpu_only:
        if gpu is None:
            import torch

            gpu = torch.cuda.is_available()
        if not gpu:
            problems.append(
                f"{parameter}.engine is {engine}, which needs a CUDA GPU, and none is visible: "
                "run on a GPU machine, or use engine: transformers (CPU) or backend: local"
            )
    return problems
