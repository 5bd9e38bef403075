"""``distributed.config_file``: an accelerate config read by accelerate's own launcher code, its
settings put in the workers' environment as ``accelerate launch`` would, and what cannot work
here refused before any node runs."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hle_reasoning.config import (
    DistributedConfig,
    ModelConfig,
    QuantizationConfig,
    TrainingConfig,
    parse,
)
from hle_reasoning.modeling.distributed import accelerate_launch, accelerate_problems
from hle_reasoning.modeling.models import load_model
from hle_reasoning.pipelines.training.workers import train_distributed
from tests.modeling.distributed_workers import one_step_training

FSDP = {
    "compute_environment": "LOCAL_MACHINE",
    "distributed_type": "FSDP",
    "fsdp_config": {
        "fsdp_version": 1,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_sharding_strategy": "SHARD_GRAD_OP",
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_use_orig_params": True,
        "fsdp_offload_params": False,
    },
    "mixed_precision": "bf16",
    "num_machines": 1,
    "num_processes": 2,
}


def write(tmp_path: Path, content: dict, name: str = "accelerate.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content))
    return str(path)


def test_an_fsdp_file_becomes_the_workers_accelerate_environment(tmp_path):
    launch = accelerate_launch(
        DistributedConfig(num_processes=2, config_file=write(tmp_path, FSDP))
    )
    assert (launch.distributed_type, launch.mixed_precision) == ("FSDP", "bf16")
    assert launch.shards_parameters and launch.needs_gpus
    env = launch.environment
    # What the Accelerator of each worker's trainer reads, with the file's values.
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_SHARDING_STRATEGY"] == "SHARD_GRAD_OP"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"
    # The rendezvous and the threads stay the project's.
    assert not {"MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"} & set(env)
    assert accelerate_launch(DistributedConfig(num_processes=2)) is None


def test_ddp_files_set_mixed_precision_and_nothing_that_shards(tmp_path):
    ddp = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_processes": 2,
    }
    launch = accelerate_launch(DistributedConfig(num_processes=2, config_file=write(tmp_path, ddp)))
    assert launch.distributed_type == "MULTI_GPU" and launch.mixed_precision == "no"
    assert not launch.shards_parameters and not launch.needs_gpus
    assert "ACCELERATE_USE_FSDP" not in launch.environment
    selected = {**ddp, "gpu_ids": "0,1", "mixed_precision": "fp16"}
    launch = accelerate_launch(
        DistributedConfig(num_processes=2, config_file=write(tmp_path, selected))
    )
    assert launch.environment["CUDA_VISIBLE_DEVICES"] == "0,1"  # the file's gpu_ids
    assert launch.environment["ACCELERATE_MIXED_PRECISION"] == "fp16"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            {"distributed_type": "XLA", "compute_environment": "LOCAL_MACHINE"},
            "sets distributed_type: XLA (compute_environment: LOCAL_MACHINE); this project's "
            "workers run NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED",
        ),
        (
            {
                "distributed_type": "MULTI_GPU",
                "compute_environment": "LOCAL_MACHINE",
                "gpu_ids": "0",
            },
            "accelerate refuses it: Less than two GPU ids",
        ),
    ],
)
def test_a_file_accelerate_or_the_project_cannot_launch_is_refused_with_its_name(
    tmp_path, content, said
):
    path = write(tmp_path, {**content, "num_processes": 2})
    config, problems = parse(
        DistributedConfig, {"num_processes": 2, "config_file": path}, "distributed"
    )
    assert not problems  # the block itself reads well; accelerate's launcher refuses the file
    problems = accelerate_problems(config, gpus=False)
    assert len(problems) == 1 and path in problems[0] and said in problems[0]


def test_the_blocks_checks_read_the_file_and_the_preflight_lists_what_the_launcher_refuses(
    tmp_path, monkeypatch
):
    import os

    import accelerate.commands.launch

    from hle_reasoning.preflight import preflight_problems

    one_gpu = {"distributed_type": "MULTI_GPU", "compute_environment": "LOCAL_MACHINE"}
    path = write(tmp_path, {**one_gpu, "gpu_ids": "0", "num_processes": 2})
    block = {"num_processes": 2, "config_file": path}

    def launched(*args, **kwargs):
        raise AssertionError("a config block's check ran accelerate's launcher")

    environment = dict(os.environ)
    with monkeypatch.context() as patched:
        patched.setattr(accelerate.commands.launch, "_validate_launch_command", launched)
        config, problems = parse(DistributedConfig, block, "distributed")
    assert config is not None and problems == []
    assert dict(os.environ) == environment
    (problem,) = preflight_problems(
        {"distributed": block}, None, uses_model=False, uses_device=False, blocks=["distributed"]
    )
    assert path in problem and "accelerate refuses it: Less than two GPU ids" in problem


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed here")
def test_deepspeed_without_the_package_says_how_to_install_it(tmp_path):
    content = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {"zero_stage": 3},
    }
    config, problems = parse(
        DistributedConfig,
        {"num_processes": 2, "config_file": write(tmp_path, content)},
        "distributed",
    )
    problems += accelerate_problems(config, gpus=True)
    assert problems and "DeepSpeed" in problems[0] and "`pip install deepspeed`" in problems[0]


def test_what_cannot_train_here_is_listed_before_any_node(tmp_path, model_params, training_params):
    scale = DistributedConfig(
        num_processes=2, config_file=write(tmp_path, {**FSDP, "mixed_precision": "fp16"})
    )
    training = TrainingConfig.from_params(training_params)  # grpo.bf16: true
    model = ModelConfig.from_params(model_params)  # 4-bit, stored as uint8
    problems = accelerate_problems(scale, training, model, gpus=False)
    assert len(problems) == 3
    assert "runs on GPUs only, and torch sees no CUDA GPU" in problems[0]
    assert "mixed_precision: fp16 but training.grpo.bf16 is true" in problems[1]
    assert "model.quantization.quant_storage=bfloat16" in problems[2]
    # On GPUs, with the FSDP-QLoRA storage and the file's precision, nothing is left.
    fixed_model = copy.deepcopy(model_params)
    fixed_model["quantization"]["quant_storage"] = "bfloat16"
    fixed_training = copy.deepcopy(training_params)
    fixed_training["grpo"]["bf16"] = False
    assert not accelerate_problems(
        scale,
        TrainingConfig.from_params(fixed_training),
        ModelConfig.from_params(fixed_model),
        gpus=True,
    )
    assert not accelerate_problems(DistributedConfig(num_processes=2), training, model, gpus=False)


def test_the_4bit_weights_are_stored_as_quant_storage_says(tiny_dir, model_params):
    def storage(value: str) -> set:
        quantization = QuantizationConfig.from_params(
            {**model_params["quantization"], "quant_storage": value}
        )
        model = load_model(str(tiny_dir), quantization=quantization, device="cpu")
        return {
            module.weight.dtype
            for module in model.modules()
            if type(module).__name__ == "Linear4bit"
        }

    import torch

    assert storage("uint8") == {torch.uint8}  # bitsandbytes' default, the study's default
    assert storage("bfloat16") == {torch.bfloat16}  # what FSDP can shard


@pytest.mark.slow
def test_the_files_mixed_precision_reaches_the_trainer_of_every_worker(
    tmp_path, tiny_dir, math_questions, model_params, training_params
):
    """A real 2-process run: training.grpo.bf16 is false, so only the file can ask for bf16."""
    content = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_CPU",
        "mixed_precision": "bf16",
        "use_cpu": True,
        "num_processes": 2,
    }
    training = one_step_training(training_params, tmp_path / "checkpoints")  # grpo.bf16: false
    questions = math_questions.iloc[[0, len(math_questions) - 1]]
    result = train_distributed(
        DistributedConfig(num_processes=2, config_file=write(tmp_path, content), timeout_s=120),
        str(tiny_dir),
        questions,
        ModelConfig.from_params({**model_params, "device": "cpu"}),
        TrainingConfig.from_params(training),
    )
    summary = result.summary
    assert (summary["world_size"], summary["steps"]) == (2, 1)
    assert (summary["distributed_type"], summary["mixed_precision"]) == ("MULTI_CPU", "bf16")
    assert result.params["accelerate.mixed_precision"] == "bf16"  # an MLflow param of the run


FILE_KEYS = st.fixed_dictionaries(
    {},
    optional={
        "compute_environment": st.sampled_from(["LOCAL_MACHINE", "AMAZON_SAGEMAKER", "moon", 3]),
        "distributed_type": st.sampled_from(
            ["NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED", "XLA", "MEGATRON_LM", "x", None]
        ),
        "mixed_precision": st.sampled_from(["no", "bf16", "fp16", "fp8", "int3", None, 1]),
        "num_processes": st.one_of(st.integers(-2, 9), st.text(max_size=3)),
        "num_machines": st.integers(0, 3),
        "machine_rank": st.integers(-1, 3),
        "gpu_ids": st.sampled_from(["all", "0", "0,1", "", "x"]),
        "use_cpu": st.booleans(),
        "fsdp_config": st.dictionaries(
            st.sampled_from(["fsdp_version", "fsdp_sharding_strategy", "fsdp_offload_params"]),
            st.one_of(st.integers(0, 3), st.text(max_size=4), st.booleans()),
        ),
        "deepspeed_config": st.dictionaries(
            st.sampled_from(["zero_stage", "offload_optimizer_device"]),
            st.one_of(st.integers(0, 4), st.text(max_size=4)),
        ),
        "unknown_key": st.text(max_size=5),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=FILE_KEYS)
@example(content={"distributed_type": "MULTI_CPU", "mixed_precision": "fp8"})  # raised once
def test_any_config_file_is_accepted_or_refused_with_a_message(tmp_path, content):
    path = write(tmp_path, content, "any.yaml")
    config, problems = parse(
        DistributedConfig, {"num_processes": 2, "config_file": path}, "distributed"
    )
    assert (config is None) == bool(problems)
    if config is not None:
        # What the block's checks let through, accelerate's launcher takes or refuses by name.
        problems = accelerate_problems(config, gpus=True)
    assert all(path in problem for problem in problems)
    if config is not None and not problems:
        launch = accelerate_launch(config)
        assert launch.distributed_type in ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")
        assert all(isinstance(v, str) for v in launch.environment.values())
