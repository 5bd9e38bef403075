"""Fixtures of the modeling tests: the tiny Mllama (fp32 and 4-bit) and HLE-format questions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from hle_reasoning.config import TinyConfig
from hle_reasoning.modeling.models import build_tiny_mllama

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / "conf" / "base" / name).read_text())


@pytest.fixture(scope="session")
def model_params() -> dict:
    params = conf("parameters.yml")["model"]
    params["name_or_path"] = "tiny"  # ${globals:model_name_or_path} in the default setup
    return params


@pytest.fixture(scope="session")
def training_params() -> dict:
    return conf("parameters_training.yml")["training"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, model_params) -> Path:
    """The tiny Mllama and its processor saved as the training pipeline saves the base model."""
    path = tmp_path_factory.mktemp("tiny_mllama")
    model, processor = build_tiny_mllama(TinyConfig.from_params(model_params["tiny"]), seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def math_questions(sample_questions) -> pd.DataFrame:
    """Math questions of the bundled sample: image questions first, then text ones."""
    math = sample_questions[sample_questions["category"] == "Math"]
    with_image = math[math["image"] != ""]
    return pd.concat([with_image, math[math["image"] == ""]]).reset_index(drop=True)
