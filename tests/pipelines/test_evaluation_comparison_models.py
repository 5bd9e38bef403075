"""Comparison models (``evaluation.comparison_models``) through the evaluation pipeline, against
the local fake OpenAI server: Table 1 rows measured here, the paired comparison with the
fine-tuned variant, resume without a request, a text-only model on the text-only subset, an
unknown model stopping with its name; and the preflight refusing an openai answering block
without a server or a model."""

from __future__ import annotations

import copy
import os

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset

from hle_reasoning.config import (
    AnsweringConfig,
    ConfigError,
    DistributedConfig,
    EvaluationConfig,
    ModelConfig,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints
from hle_reasoning.launch import project_error
from hle_reasoning.modeling.openai_backend import EndpointConfigError
from hle_reasoning.pipelines.evaluation import create_pipeline
from hle_reasoning.preflight import PreflightError, PreflightHook, preflight_problems
from tests.conftest import put_blocks
from tests.fake_openai import FakeJudgeServer
from tests.pipelines import test_evaluation as evaluation_tests
from tests.pipelines.evaluation_runs import responses_store

conf = evaluation_tests.conf
# The fixtures of the evaluation tests: the tiny model, its parameters, twelve Math questions.
model_params = evaluation_tests.model_params
evaluation_params = evaluation_tests.evaluation_params
tiny_base = evaluation_tests.tiny_base
questions = evaluation_tests.questions

# Which questions (by position in the fixture) each served model answers right.
RIGHT = {"base": {0, 1}, "tuned": {0, 2, 3, 4, 9}, "r1": {1, 2, 5}, "gpt": {0, 9, 10}}


@pytest.fixture(scope="module")
def server(questions):
    """Every variant and comparison model served by one fake server: the reference answer for
    the questions a model gets right, a wrong one otherwise."""
    position = {text: i for i, text in enumerate(questions["question"])}
    answers = dict(zip(questions["question"], questions["answer"], strict=True))

    def reply(body: dict) -> str:
        text = " ".join(
            message["content"]  # the system prompt: a string, as HLE's request sends it
            if isinstance(message["content"], str)
            else " ".join(p["text"] for p in message["content"] if p["type"] == "text")
            for message in body["messages"]
        )
        question = next(q for q in position if q in text)
        right = position[question] in RIGHT[body["model"]]
        answer = answers[question] if right else "no idea"
        return f"Explanation: fake.\nAnswer: {answer}\nConfidence: {60 if right else 40}%"

    with FakeJudgeServer(reply=reply, models=set(RIGHT)) as fake:
        yield fake


def params_with_models(evaluation_params, base_url, extra=()):
    params = copy.deepcopy(evaluation_params)
    params["comparison"]["bootstrap_resamples"] = 200  # the figures are not what is tested here
    for variant, model in (("baseline", "base"), ("finetuned", "tuned")):
        params["answering"][variant].update(backend="openai", base_url=base_url, model=model)
    params["comparison_models"] = [
        {"name": "DeepSeek-R1", "base_url": base_url, "model": "r1", "text_only": True},
        {"name": "GPT-4o", "base_url": base_url, "model": "gpt", "concurrency": 2},
        *extra,
    ]
    return params


def run(tmp_path, questions, tiny_base, evaluation_params, model_params):
    """The evaluation pipeline in memory (the evaluation tests' runner); the served fine-tuned
    variant never loads its adapter."""
    adapter = str(tmp_path / "lora_adapter")
    try:
        return evaluation_tests.run_in_memory(
            tmp_path, questions, tiny_base, adapter, evaluation_params, model_params
        )
    finally:
        plt.close("all")  # the reliability diagrams


@pytest.mark.slow
def test_comparison_models_are_measured_compared_and_resumed(
    tmp_path, server, questions, tiny_base, evaluation_params, model_params
):
    params = params_with_models(evaluation_params, server.base_url)
    out = run(tmp_path, questions, tiny_base, params, model_params)
    text_only = questions[questions["image"] == ""]
    # 12 questions for each variant and GPT-4o, the 9 without an image for DeepSeek-R1.
    assert len(server.requests) == 3 * len(questions) + len(text_only)
    r1 = [r for r in server.requests if r["body"]["model"] == "r1"]
    assert all(len(r["body"]["messages"][-1]["content"]) == 1 for r in r1)  # no image part

    table = out["table_1"]
    paper = conf("parameters_evaluation.yml")["evaluation"]["report"]["paper_rows"]
    assert (table["source"] == "HLE paper").sum() == len(paper)  # the copied rows stay
    measured = table[table["source"] == "measured"].set_index("model")
    assert measured.loc["DeepSeek-R1", "n"] == len(text_only) == 9
    assert measured.loc["GPT-4o", "n"] == len(questions) == 12
    assert measured.loc["DeepSeek-R1", "note"] == "9 of 12 test questions: text-only subset"
    assert measured.loc["GPT-4o", "accuracy"] == pytest.approx(100 * 3 / 12)
    assert measured.loc["DeepSeek-R1", "accuracy"] == pytest.approx(100 * 3 / 9)

    # Paired with the fine-tuned variant, counts from the stored predictions.
    tuned = out["predictions"]["finetuned"].set_index("id")["correct"]
    predictions = pd.concat([out["predictions"][k] for k in ("deepseek_r1", "gpt_4o")])
    comparison = out["comparison_models_comparison"]
    for name, n in (("DeepSeek-R1", 9), ("GPT-4o", 12)):
        mine = predictions[predictions["variant"] == name].set_index("id")["correct"]
        assert len(mine) == n
        theirs = tuned.reindex(mine.index)
        row = comparison[(comparison["model"] == name) & (comparison["category"] == "All")]
        row = row.iloc[0]
        assert row["n"] == n and row["finetuned_questions"] == 12
        assert row["model_only"] == (mine & ~theirs).sum()
        assert row["finetuned_only"] == (~mine & theirs).sum()
        assert row["both_correct"] == (mine & theirs).sum()
        assert row["accuracy_diff"] == pytest.approx(100 * (theirs.mean() - mine.mean()))
        assert 0 < row["mcnemar_p"] <= 1
    assert comparison.set_index("model").loc["DeepSeek-R1"].iloc[0]["subset"] == "text-only"
    report = out["evaluation_report"]
    if os.environ.get("HLE_PRINT_REPORT"):
        print(report)
    assert "## Comparison models against" in report
    assert "9 paired questions of the text-only subset (3 of the fine-tuned model's 12" in report
    assert "copied from the paper" in report
    metrics = {
        k.removeprefix("comparison_models."): v for k, v in out["evaluation_metrics"].items()
    } | out["comparison_models_metrics"]
    assert metrics["gpt_4o.accuracy"]["value"] == pytest.approx(25.0)
    assert metrics["deepseek_r1.comparison.n"]["value"] == 9
    # Like the variants, each comparison model has its reliability diagram and MLflow run.
    assert {"deepseek_r1", "gpt_4o"} <= set(out["reliability_diagrams"])
    runs = {run.variant: run for run in out["evaluation_runs"]}
    assert runs["GPT-4o"].tags["model"] == "gpt" and runs["GPT-4o"].params["subset"] == "all"
    assert runs["DeepSeek-R1"].params["subset"] == "text-only"
    # Their Table 1 rows and MLflow figures carry every registered score (the Brier score, by
    # hand from their judged predictions).
    for name, key in (("DeepSeek-R1", "deepseek_r1"), ("GPT-4o", "gpt_4o")):
        judged = predictions[(predictions["variant"] == name) & predictions["judged"]]
        stated = judged["confidence"].astype(float) / 100
        brier = ((stated - judged["correct"].astype(float)) ** 2).mean()
        assert measured.loc[name, "brier_score"] == pytest.approx(brier, rel=1e-12)
        assert metrics[f"{key}.brier_score"]["value"] == pytest.approx(brier, rel=1e-12)
    by_category = out["metrics_by_category"]
    assert {"DeepSeek-R1", "GPT-4o", "baseline", "finetuned"} == set(by_category["variant"])

    # A rerun asks nothing: every answer is stored.
    asked = len(server.requests)
    again = run(tmp_path, questions, tiny_base, params, model_params)
    assert len(server.requests) == asked
    pd.testing.assert_frame_equal(again["comparison_models_comparison"], comparison)

    # A model the server does not serve stops the run at its first request, naming it.
    unknown = {"name": "Grok-2", "base_url": server.base_url, "model": "grok-2"}
    params = params_with_models(evaluation_params, server.base_url, extra=[unknown])
    with pytest.raises(Exception) as error:  # Kedro wraps a dataset's error in its own
        run(tmp_path, questions, tiny_base, params, model_params)
    message = str(project_error(error.value, (EndpointConfigError,)))
    assert len(server.requests) == asked + 1
    assert message.startswith("comparison model 'Grok-2': answering stopped")
    assert "HTTP 404" in message and "evaluation.comparison_models[2].model" in message
    assert len(message.splitlines()) == 1
    # The other models' answers are still stored.
    stored = responses_store(tmp_path).load()
    counts = stored["variant"].value_counts().to_dict()
    assert {k: counts[k] for k in ("GPT-4o", "DeepSeek-R1")} == {"GPT-4o": 12, "DeepSeek-R1": 9}


@pytest.mark.slow
def test_no_comparison_model_adds_nothing_to_the_report(
    tmp_path, server, questions, tiny_base, evaluation_params, model_params
):
    params = params_with_models(evaluation_params, server.base_url)
    params["comparison_models"] = []
    out = run(tmp_path, questions, tiny_base, params, model_params)
    assert out["table_1"]["variant"].fillna("").tolist()[-2:] == ["baseline", "finetuned"]
    assert "Comparison models" not in out["evaluation_report"]
    assert "copied from the paper" not in out["evaluation_report"]
    assert out["comparison_models_comparison"].empty
    assert out["comparison_models_metrics"] == {}
    assert not any(k.startswith("comparison_models.") for k in out["evaluation_metrics"])


def test_the_preflight_refuses_an_openai_block_without_a_server_or_a_model(monkeypatch):
    for variable in ("HLE_ANSWER_FINETUNED_BASE_URL", "HLE_ANSWER_DEEPSEEK_R1_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    params = {"evaluation": copy.deepcopy(conf("parameters_evaluation.yml")["evaluation"])}
    params["evaluation"]["answering"]["finetuned"].update(backend="openai", model="tuned")
    params["evaluation"]["comparison_models"] = [
        {"name": "DeepSeek-R1", "base_url": "https://api.example.com/v1"}
    ]
    problems = preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints())
    assert problems == [
        "finetuned is answered by the openai backend, but evaluation.answering.finetuned.base_url "
        "is not set (nor HLE_ANSWER_FINETUNED_BASE_URL): give the server's URL, e.g. "
        "http://127.0.0.1:8000/v1",
        "comparison model 'DeepSeek-R1': evaluation.comparison_models[0].model is not set (nor "
        "HLE_ANSWER_DEEPSEEK_R1_MODEL): give the served model's name, as the server's /v1/models "
        "lists it",
    ]
    # The preflight hook of a kedro run (the catalog holds the blocks Kedro built): refused
    # before the first node, nothing written.
    catalog = DataCatalog({"answer_endpoints": MemoryDataset(AnswerEndpoints())})
    put_blocks(
        catalog,
        create_pipeline(),
        evaluation=EvaluationConfig.model_validate(params["evaluation"]),
        model=ModelConfig.model_validate({**conf("parameters.yml")["model"], "device": "cpu"}),
        distributed=DistributedConfig.model_validate(conf("parameters.yml")["distributed"]),
    )
    with pytest.raises(PreflightError) as error:
        PreflightHook().before_pipeline_run({}, create_pipeline(), catalog)
    assert "no node was run and no output written" in str(error.value)
    assert all(problem in str(error.value) for problem in problems)
    # The environment (or the credentials) may set them instead.
    monkeypatch.setenv("HLE_ANSWER_FINETUNED_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("HLE_ANSWER_DEEPSEEK_R1_MODEL", "deepseek-reasoner")
    assert preflight_problems(params, None, False, False, answer_endpoints=AnswerEndpoints()) == []


def test_comparison_models_need_names_of_their_own():
    params = copy.deepcopy(conf("parameters_evaluation.yml")["evaluation"])
    params["comparison_models"] = [{"name": "GPT-4o"}, {"name": "gpt 4o"}, {"name": "Baseline"}]
    with pytest.raises(ConfigError) as error:
        EvaluationConfig.from_params(params)
    message = str(error.value)
    assert "evaluation.comparison_models[1].name is 'gpt 4o'" in message
    assert "same thing as evaluation.comparison_models[0].name" in message
    assert "evaluation.comparison_models[2].name is 'Baseline'" in message
    assert "same thing as evaluation.answering.baseline" in message


def test_a_comparison_model_is_an_answering_block_of_the_openai_backend():
    """One config type for every variant: a comparison model parses into an AnsweringConfig
    (its defaults), plus its name and text_only; another backend is refused, naming the key."""
    params = copy.deepcopy(conf("parameters_evaluation.yml")["evaluation"])
    params["comparison_models"] = [{"name": "R1", "base_url": "http://h/v1", "model": "r1"}]
    entry = EvaluationConfig.from_params(params).comparison_models[0]
    assert isinstance(entry, AnsweringConfig) and entry.answering is entry
    assert entry.backend == "openai" and entry.concurrency == AnsweringConfig().concurrency
    params["comparison_models"][0]["backend"] = "local"
    with pytest.raises(ConfigError) as error:
        EvaluationConfig.from_params(params)
    assert "evaluation.comparison_models[0].backend is 'local'" in str(error.value)
