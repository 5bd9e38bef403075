"""The proposal's full setup (`--env paper`) resolves, and fails early and clearly where this machine cannot run it."""

import os

import pytest
import torch
from kedro.config import OmegaConfigLoader

from hle_reasoning.preflight import preflight_problems
from hle_reasoning.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT
from tests.kedro_cli import kedro_run_in_process


def paper_params() -> dict:
    args = {**CONFIG_LOADER_ARGS, "default_run_env": "paper"}
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **args)["parameters"]


def test_paper_config_resolves_to_the_proposals_setup():
    params = paper_params()
    assert params["hle_source"] == "cais/hle"
    model = params["model"]
    assert model["name_or_path"] == "meta-llama/Llama-3.2-11B-Vision-Instruct"
    assert model["device"] == "cuda"
    assert model["quantization"] == {
        "enabled": True,
        "bits": 4,
        "quant_type": "nf4",
        "compute_dtype": "bfloat16",
        "double_quant": False,
        "quant_storage": "uint8",  # from base: bitsandbytes' default (one GPU, no FSDP)
    }
    # Soft merge: keys the paper env does not override come from base.
    assert params["data_processing"]["split"]["confidence_level"] == 0.90
    assert params["data_processing"]["focus_categories"] == ["Math"]


def without_credentials(monkeypatch) -> None:
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "HLE_JUDGE_API_KEY",
        "OPENAI_API_KEY",
        "HLE_JUDGE_BASE_URL",
        "OPENAI_BASE_URL",
        "HLE_JUDGE_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_paper_setup_judges_with_the_official_llm_judge():
    judge = paper_params()["evaluation"]["judge"]
    assert judge["kind"] == "llm" and judge["llm"]["model"] == "o3-mini-2025-01-31"
    base = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    assert base["evaluation"]["judge"]["kind"] == "rules"  # the offline default study


LLAMA = "meta-llama/Llama-3.2-11B-Vision-Instruct"


def test_preflight_lists_every_problem(monkeypatch, fake_hub):
    without_credentials(monkeypatch)
    fake_hub.go_online({LLAMA: "manual"})  # the hub says the model is gated
    # The same answer on a machine with or without a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = preflight_problems(paper_params(), "cais/hle", uses_model=True, uses_device=True)
    text = "\n".join(problems)
    assert len(problems) == 4
    assert "hle_source is the gated hub dataset 'cais/hle' but HF_TOKEN is not set" in text
    assert "model.name_or_path is the gated hub model" in text
    assert "model.device is 'cuda' but torch" in text
    assert "evaluation.judge.kind is llm" in text and "no API key is set" in text
    assert "--params evaluation.judge.kind=rules" in text


def test_preflight_accepts_the_llm_judge_with_a_key_or_a_local_server(monkeypatch, fake_hub):
    without_credentials(monkeypatch)
    fake_hub.go_online({LLAMA: "manual"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    params = paper_params()
    monkeypatch.setenv("HLE_JUDGE_API_KEY", "sk-test")
    assert preflight_problems(params, "cais/hle", uses_model=True, uses_device=True) == []
    monkeypatch.delenv("HLE_JUDGE_API_KEY")
    params["evaluation"]["judge"]["llm"]["base_url"] = "http://127.0.0.1:8000/v1"
    assert preflight_problems(params, "cais/hle", uses_model=True, uses_device=True) == []


def test_preflight_is_quiet_for_the_default_setup():
    params = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    assert preflight_problems(params, params["hle_source"], uses_model=True, uses_device=True) == []


@pytest.mark.slow
def test_paper_run_without_token_stops_before_any_node(project_copy):
    env_backup = {
        k: os.environ.pop(k) for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if k in os.environ
    }
    try:
        result = kedro_run_in_process(
            project_copy, "--env", "paper", "--pipelines", "data_processing"
        )
    finally:
        os.environ.update(env_backup)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no node was run" in output and "HF_TOKEN is not set" in output
    assert "Running node" not in output
    assert not (project_copy / "data" / "08_reporting").exists()


@pytest.mark.slow
def test_bad_training_config_stops_a_whole_run_before_any_node(project_copy):
    result = kedro_run_in_process(project_copy, "--params", "training.grpo.num_generations=1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "training.grpo.num_generations is 1" in output and "no node was run" in output
    assert "Running node" not in output
    assert not (project_copy / "data" / "03_primary").exists()
