"""The answering node with the openai backend (against the local fake server): answers stored one
by one, a resumed run asks only what is missing, another served model is asked afresh, and a
backend without a server is a one-screen configuration error."""

from __future__ import annotations

import pandas as pd
import pytest

from hle_reasoning.config import ConfigError
from tests.fake_openai import FakeJudgeServer
from tests.pipelines.evaluation_runs import answer_into, plan_for, responses_store

QUESTIONS = pd.DataFrame(
    {
        "id": [f"q{i}" for i in range(6)],
        "question": [f"What is {i} + {i}?" for i in range(6)],
        "image": [""] * 6,
    }
)


def reply(body: dict) -> str:
    return (
        f"Explanation: sum.\nAnswer: {body['messages'][-1]['content'][0]['text']}\nConfidence: 50%"
    )


def run_node(store, base_url, model="served", stop_after=None, endpoints=None):
    answering = {"baseline": {"backend": "openai", "base_url": base_url, "model": model}}
    plan = plan_for(
        "unused-base-model",  # the served variant never loads weights
        {"name_or_path": "tiny"},
        generation={"max_new_tokens": 32},
        answering=answering,
    )
    answer_into(store, plan, QUESTIONS, stop_after=stop_after, endpoints=endpoints)


def test_served_answers_are_stored_one_by_one_and_a_resumed_run_asks_only_the_rest(tmp_path):
    store = responses_store(tmp_path)
    with FakeJudgeServer(reply=reply) as server:
        run_node(store, server.base_url, stop_after=3)  # killed after 3 answers
        first = store.load()
        assert len(first) == 3 and len(server.requests) >= 3
        asked = len(server.requests)
        run_node(store, server.base_url)
        # Only the three missing questions are asked.
        assert len(server.requests) - asked == 3
        done = store.load()
        assert sorted(done["id"]) == sorted(QUESTIONS["id"])
        assert set(done["answered_by"]) == {"openai:served"}
        assert done["generation_key"].nunique() == 1
        # Another served model: every question is asked again, the old answers dropped.
        run_node(store, server.base_url, model="other")
        assert len(server.requests) - asked == 3 + 6
    again = store.load()
    assert len(again) == 6 and set(again["answered_by"]) == {"openai:other"}


def test_the_key_from_the_environment_is_sent_and_the_base_url_may_come_from_it(
    tmp_path, monkeypatch
):
    store = responses_store(tmp_path)
    with FakeJudgeServer(reply=reply) as server:
        monkeypatch.setenv("HLE_ANSWER_BASELINE_API_KEY", "sk-test-key")
        monkeypatch.setenv("HLE_ANSWER_BASELINE_BASE_URL", server.base_url)
        run_node(store, None)
    assert {r["headers"]["authorization"] for r in server.requests} == {"Bearer sk-test-key"}
    assert len(store.load()) == 6


def test_an_openai_backend_without_a_server_or_model_names_what_to_set(tmp_path):
    store = responses_store(tmp_path)
    with pytest.raises(ConfigError) as error:
        run_node(store, None, model=None)
    message = str(error.value)
    assert "evaluation.answering.baseline.base_url is not set" in message
    assert "HLE_ANSWER_BASELINE_BASE_URL" in message
    assert "evaluation.answering.baseline.model is not set" in message


@pytest.mark.slow
def test_kedro_run_stops_at_a_refused_key_with_one_screen_and_no_key(project_copy, monkeypatch):
    from tests.kedro_cli import kedro_run

    prepared = kedro_run(
        project_copy, "--pipelines", "data_processing,training", "--params", "training.max_steps=1"
    )
    assert prepared.returncode == 0, (prepared.stdout + prepared.stderr)[-3000:]
    monkeypatch.setenv("HLE_ANSWER_BASELINE_API_KEY", "sk-refused-key")
    with FakeJudgeServer(always=401) as server:
        params = (
            "evaluation.answering.baseline.backend=openai,"
            f"evaluation.answering.baseline.base_url={server.base_url},"
            "evaluation.answering.baseline.model=served"
        )
        result = kedro_run(project_copy, "--pipelines", "evaluation", "--params", params)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert len(server.requests) == 1  # stopped at the first request
    assert "Error: EndpointConfigError: answering stopped at the first refused request" in output
    assert "HLE_ANSWER_<NAME>_API_KEY" in output
    assert "Traceback" not in output and "sk-refused-key" not in output
