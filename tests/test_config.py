"""The typed configuration: conf/base is the defaults' one home, and any bad key is named."""

from __future__ import annotations

import copy
import functools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kedro.config import OmegaConfigLoader

from hle_reasoning.config import (
    BLOCKS,
    ConfigError,
    EvaluationConfig,
    GenerationConfig,
    JudgeConfig,
    TrainingConfig,
    parse,
    parse_blocks,
)
from hle_reasoning.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT
from tests.kedro_cli import kedro_run_in_process


@functools.cache
def _parameters(env: str) -> dict:
    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **args)["parameters"]


def parameters(env: str = "local") -> dict:
    """The resolved parameters of conf/base (+ conf/<env>), a fresh copy each time."""
    return copy.deepcopy(_parameters(env))


def keys(tree: dict, prefix: str = "") -> set[str]:
    """Every leaf's dotted path (lists are leaves)."""
    out = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out |= keys(value, path) if isinstance(value, dict) else {path}
    return out


@pytest.mark.parametrize("env", ["local", "paper"])
def test_every_block_of_both_setups_parses(env):
    params = parameters(env)
    blocks, problems = parse_blocks(params)
    assert problems == []
    assert set(blocks) == set(BLOCKS)


def test_the_yaml_sets_every_key_and_the_code_defaults_equal_it():
    params = parameters()
    blocks, _ = parse_blocks(params)
    for name, cls in BLOCKS.items():
        parsed = blocks[name]
        # Every key of the dataclass tree is written in conf/base: the YAML documents them all.
        declared = parsed.model_dump()
        if name == "evaluation":
            declared.pop("report")  # no code defaults: the YAML is its only home
        assert keys(declared) <= keys(params[name]), name
        # Defaults: a block built without arguments equals what conf/base sets.
        if name == "evaluation":
            default = EvaluationConfig(report=parsed.report)
        else:
            default = cls()
        assert parsed == default, name


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        (
            "training.grpo.tempreature",
            "training.grpo.tempreature: unknown key; did you mean temperature?",
        ),
        ("training.lora.alpah", "training.lora.alpah: unknown key; did you mean alpha?"),
        (
            "model.quantization.quant_typ",
            "model.quantization.quant_typ: unknown key; did you mean quant_type?",
        ),
        ("data_processing.split.sed", "data_processing.split.sed: unknown key; did you mean seed?"),
        (
            "evaluation.generation.max_new_token",
            "evaluation.generation.max_new_token: unknown key; did you mean max_new_tokens?",
        ),
        (
            "evaluation.judge.llm.workrs",
            "evaluation.judge.llm.workrs: unknown key; did you mean workers?",
        ),
        ("evaluation.metrics.bta", "evaluation.metrics.bta: unknown key; did you mean beta?"),
    ],
)
def test_a_misspelt_key_is_named_with_the_closest_valid_name(dotted, message):
    params = copy.deepcopy(parameters())
    *path, key = dotted.split(".")
    section = params
    for part in path:
        section = section[part]
    section[key] = 0.5
    _, problems = parse_blocks(params)
    assert problems == [message]


def test_every_problem_of_every_block_at_once():
    params = copy.deepcopy(parameters())
    params["training"]["grpo"]["temperature"] = "hot"
    params["training"]["checkpoints"]["resume"] = "sometimes"
    params["evaluation"]["generation"]["batch_size"] = 0
    params["evaluation"]["metrics"]["p"] = "3"
    params["data_processing"]["split"]["confidence_level"] = 1.5
    params["model"]["dtype"] = "int8"
    params["evaluation"]["judge"]["kind"] = "human"
    _, problems = parse_blocks(params)
    text = "\n".join(problems)
    assert len(problems) == 7, text
    for fragment in (
        "training.grpo.temperature is 'hot'; it must be a number.",
        "training.checkpoints.resume is 'sometimes'; choose one of 'auto', True, False.",
        "evaluation.generation.batch_size is 0; it must be >= 1.",
        "evaluation.metrics.p is '3'; choose one of '1', '2', 'max'.",
        "data_processing.split.confidence_level is 1.5; set it strictly between 0 and 1.",
        "model.dtype is 'int8'; choose one of 'float32', 'bfloat16', 'float16'.",
        "evaluation.judge.kind is 'human'; choose one of 'rules', 'llm'.",
    ):
        assert fragment in text


def test_values_from_the_command_line_are_read_as_their_type():
    # OmegaConf reads `--params evaluation.metrics.p=1` as the integer 1 and 1e-4 as text.
    config, problems = parse(
        TrainingConfig, {"grpo": {"learning_rate": "1e-4", "num_train_epochs": 3}}, "training"
    )
    assert problems == []
    assert config.grpo.learning_rate == 1e-4 and config.grpo.num_train_epochs == 3.0
    evaluation = copy.deepcopy(parameters()["evaluation"])
    evaluation["metrics"]["p"] = 1
    config, problems = parse(EvaluationConfig, evaluation, "evaluation")
    assert problems == [] and config.metrics.p == "1"


@pytest.mark.parametrize("value", [10**400, float("inf"), float("nan"), "1e999", "hot", True, None])
def test_a_number_that_is_not_one_is_a_problem_not_a_crash(value):
    _, problems = parse(TrainingConfig, {"grpo": {"temperature": value}}, "training")
    assert len(problems) == 1 and problems[0].startswith("training.grpo.temperature is ")


def test_building_a_block_directly_runs_the_same_checks():
    with pytest.raises(ConfigError) as error:
        GenerationConfig(batch_size=0, max_new_tokens=0)
    assert error.value.problems == [
        "evaluation.generation.batch_size is 0; it must be >= 1.",
        "evaluation.generation.max_new_tokens is 0; it must be >= 1.",
    ]
    assert isinstance(error.value, ValueError)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    block=st.sampled_from(sorted(BLOCKS)),
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "grpo",
                "lora",
                "generation",
                "judge",
                "split",
                "quantization",
                "tiny",
                "metrics",
                "rewards",
                "report",
                "max_steps",
                "dtype",
                "typo",
            ]
        ),
        json_like,
        max_size=4,
    ),
)
def test_parsing_any_yaml_returns_a_block_or_problems_and_never_raises(block, overrides):
    data = {**parameters()[block], **overrides}
    config, problems = parse(BLOCKS[block], data, block)
    assert all(isinstance(p, str) and p.startswith(block) for p in problems)
    assert (config is None) == bool(problems)


@pytest.mark.slow
def test_a_misspelt_key_and_a_keyless_llm_judge_stop_kedro_run_before_any_node(project_copy):
    env_backup = {
        k: os.environ.pop(k)
        for k in ("HLE_JUDGE_API_KEY", "OPENAI_API_KEY", "HLE_JUDGE_BASE_URL", "OPENAI_BASE_URL")
        if k in os.environ
    }
    try:
        result = kedro_run_in_process(
            project_copy,
            "--params",
            "training.grpo.tempreature=0.5,evaluation.judge.kind=llm",
        )
    finally:
        os.environ.update(env_backup)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no node was run" in output
    assert "training.grpo.tempreature: unknown key; did you mean temperature?" in output
    assert "evaluation.judge.kind is llm" in output
    assert "--params evaluation.judge.kind=rules" in output
    assert "Running node" not in output
    assert not (project_copy / "data" / "03_primary").exists()


def test_the_judge_label_names_the_model_that_judged():
    judge = JudgeConfig.from_params({"kind": "llm", "llm": {"model": "o3-mini-2025-01-31"}})
    # HLE_JUDGE_MODEL or the credentials' model (the endpoint's) is the one that judges.
    assert judge.label("gpt-4.1-2025-04-14") == "llm:gpt-4.1-2025-04-14"
    assert judge.label("gpt-4.1-2025-04-14", style="report") == "llm (gpt-4.1-2025-04-14)"
    assert judge.label(None) == "llm:o3-mini-2025-01-31"
    assert JudgeConfig().label("gpt-4.1-2025-04-14") == "rules"


@pytest.mark.parametrize("env", ["local", "paper"])
def test_kedro_builds_every_pipelines_typed_parameters_from_conf(env):
    """Kedro builds each node argument annotated with a block from conf/ before the run, for any
    selection of pipelines: a block and one of its fields both annotated must not make Kedro
    write the field into a block it has already built (it refuses the run then)."""
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project
    from kedro.validation.parameter_validator import ParameterValidator
    from kedro.validation.type_extractor import TypeExtractor
    from kedro.validation.utils import get_typed_fields

    bootstrap_project(PROJECT_ROOT)
    registered = dict(pipelines)
    selections = {name: {name: pipe} for name, pipe in registered.items()}
    selections["every pipeline"] = registered  # what reading context.params validates
    for name, selection in selections.items():
        typed = ParameterValidator(selection).validate_raw_params(parameters(env))
        requirements = TypeExtractor(selection).extract_types_from_pipelines()
        assert requirements, name  # every pipeline reads a block
        for key, cls in requirements.items():
            value = typed
            for part in key.split("."):  # as Kedro's context names params:<key> in the catalog
                fields = value if isinstance(value, dict) else get_typed_fields(value)
                value = fields[part]
            assert isinstance(value, cls), (name, key, type(value))
    assert {"model", "data_processing", "training", "evaluation", "distributed"} <= set(
        TypeExtractor({"all": registered["__default__"]}).extract_types_from_pipelines()
    )


def test_a_list_where_a_block_expects_one_is_named_in_plain_words():
    """A list's elements are named in the plural (was "a list of a block of keys")."""
    problems = parse_blocks(
        {"evaluation": {"comparison_models": "x"}, "training": {"lora": {"target_modules": 3}}}
    )[1]
    assert "evaluation.comparison_models is 'x'; it must be a list of blocks of keys." in problems
    assert "training.lora.target_modules is 3; it must be a list of strings." in problems
