"""The project's run command: a pipeline run alone adds the producers of its missing inputs."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from hle_reasoning.cli import missing_upstream, run
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def registry():
    bootstrap_project(PROJECT_ROOT)
    return pipelines


def test_training_alone_on_a_fresh_clone_needs_the_split(registry):
    missing, upstream = missing_upstream(
        registry["training"], registry["__default__"], lambda name: False
    )
    assert missing == ["focus_train"]
    assert sorted(upstream) == ["select_focus_node", "split_questions_node"]


def test_evaluation_alone_on_a_fresh_clone_needs_the_split_model_and_adapter(registry):
    missing, upstream = missing_upstream(
        registry["evaluation"], registry["__default__"], lambda name: False
    )
    assert missing == ["base_model", "focus_test", "lora_adapter"]
    assert sorted(upstream) == [
        "prepare_base_model_node",
        "select_focus_node",
        "split_questions_node",
        "train_grpo_node",
    ]


def test_nothing_is_added_when_the_inputs_exist(registry):
    for name in ("data_processing", "training", "evaluation"):
        assert missing_upstream(registry[name], registry["__default__"], lambda n: True) == (
            [],
            [],
        )
    # Only what is missing is made: with the split present, evaluation adds the training only.
    missing, upstream = missing_upstream(
        registry["evaluation"], registry["__default__"], lambda name: name == "focus_test"
    )
    assert missing == ["base_model", "lora_adapter"]
    assert "split_questions_node" in upstream  # train_grpo needs focus_train, which is missing


def test_evaluation_with_a_trained_adapter_does_not_retrain_for_the_completions_table(registry):
    """A study trained before the completions table existed: the report reads the table, which
    is missing, and does without it rather than retraining."""
    assert "training_completions" in registry["evaluation"].inputs()
    assert missing_upstream(
        registry["evaluation"], registry["__default__"], lambda n: n != "training_completions"
    ) == ([], [])


def test_judge_agreement_is_not_part_of_the_study(registry):
    assert "judge_agreement" in registry
    default = {node.name for node in registry["__default__"].nodes}
    assert "measure_judge_agreement_node" not in default


def test_the_merged_checkpoint_is_made_only_by_name_and_from_the_trained_adapter(registry):
    default = {node.name for node in registry["__default__"].nodes}
    assert "merge_lora_adapter_node" not in default
    missing, upstream = missing_upstream(
        registry["serving"], registry["__default__"], lambda name: name == "focus_test"
    )
    assert missing == ["base_model", "lora_adapter"] and "train_grpo_node" in upstream


def test_an_unknown_pipeline_is_named_with_the_known_ones(registry):
    result = CliRunner().invoke(run, ["--pipelines", "trainig"])
    assert result.exit_code == 1
    assert "Error: unknown pipeline 'trainig': choose from __default__, data_processing" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_a_pipeline_without_upstream_inputs_builds_no_catalog_to_check_them(registry, monkeypatch):
    from hle_reasoning import cli

    built = []
    monkeypatch.setattr(cli, "_catalog", lambda kwargs: built.append(kwargs) or _AllExist())
    kwargs = {"pipelines": ["data_processing"], "env": None, "params": {}}
    assert cli._with_upstream(kwargs) == kwargs
    assert built == []  # data_processing reads only raw data: nothing to ask the catalog
    assert cli._with_upstream({**kwargs, "pipelines": ["evaluation"]})["pipelines"] == [
        "evaluation"
    ]
    assert len(built) == 1  # evaluation's inputs: one catalog for all of its questions


class _AllExist:
    def exists(self, name: str) -> bool:
        return True


def test_the_upstream_check_reads_the_catalog_alone_and_leaves_the_parameters_to_the_session(
    registry, project_copy, monkeypatch
):
    """The check for missing inputs builds no second context: it reads the catalog's entries
    (no parameters, which the session reads and validates under the run lock), and asks them."""
    from kedro.config import OmegaConfigLoader

    from hle_reasoning import cli

    reads = []
    original = OmegaConfigLoader.__getitem__
    monkeypatch.setattr(
        OmegaConfigLoader, "__getitem__", lambda self, key: reads.append(key) or original(self, key)
    )
    monkeypatch.chdir(project_copy)
    kwargs = {"pipelines": ["training"], "env": None, "params": {"seed": 7}}
    catalog = cli._catalog(kwargs)
    assert "parameters" not in reads and reads.count("catalog") == 1
    assert not catalog.exists("focus_train")  # a fresh copy: no split yet
    assert cli._with_upstream(kwargs)["pipelines"] == ["training", "__default__"]
    (project_copy / "data/05_model_input").mkdir(parents=True)
    pd.DataFrame({"id": ["q"]}).to_parquet(project_copy / "data/05_model_input/focus_train.parquet")
    assert cli._catalog(kwargs).exists("focus_train")
    assert "parameters" not in reads


def test_the_upstream_check_finds_outputs_from_a_subfolder_of_the_project(
    registry, project_copy, monkeypatch
):
    """`kedro run` started in notebooks/ asks the catalog's relative paths from the project root,
    as Kedro's context does: an existing split is not made again."""
    from hle_reasoning import cli

    (project_copy / "data/05_model_input").mkdir(parents=True)
    pd.DataFrame({"id": ["q"]}).to_parquet(project_copy / "data/05_model_input/focus_train.parquet")
    (project_copy / "notebooks").mkdir(exist_ok=True)
    monkeypatch.chdir(project_copy / "notebooks")
    kwargs = {"pipelines": ["training"], "env": None, "params": {}}
    added = cli._with_upstream(kwargs).get("node_names") or ()
    assert "split_questions_node" not in added and "select_focus_node" not in added


def test_a_run_kedro_refuses_is_one_message_with_every_problem_of_the_blocks_it_validated(
    registry, monkeypatch
):
    from kedro.validation.exceptions import ParameterValidationError

    from hle_reasoning.cli import _refused_parameters

    monkeypatch.chdir(PROJECT_ROOT)
    refused = ParameterValidationError("Parameter validation failed: (pydantic's text)")
    params = {
        "training": {"grpo": {"beta": -1}},
        "data_processing": {"split": {"sed": 3}},
    }
    # The run's own pipelines: their blocks only.
    message = _refused_parameters({"params": params, "pipelines": ["data_processing"]}, refused)
    assert message.startswith("PreflightError: This run cannot work as configured; no node")
    assert "  - data_processing.split.sed: unknown key; did you mean seed?" in message
    assert "training.grpo.beta" not in message
    assert "pydantic" not in message
    # The training pipeline reads the training block: its problem is listed too.
    message = _refused_parameters({"params": params, "pipelines": ["training"]}, refused)
    assert "  - training.grpo.beta is -1.0; set it to a number >= 0." in message
