"""Answering through an OpenAI-compatible endpoint, against the local fake server: HLE's request,
the stored records, the failure cases (401, 404, 429 with Retry-After, 500 then success)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hle_reasoning.config import AnsweringConfig, GenerationConfig
from hle_reasoning.datasets.endpoints import AnswerEndpoints, AnswerEndpointsDataset
from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT
from hle_reasoning.modeling.openai_backend import (
    RESPONSE_FIELDS,
    Endpoint,
    EndpointAnswerer,
    EndpointConfigError,
    endpoint_key,
    request_messages,
)
from tests.fake_openai import FakeJudgeServer

IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
QUESTIONS = pd.DataFrame(
    {
        "id": ["q-text", "q-image", "q-three"],
        "question": ["What is 2 + 2?", "What colour is this pixel?", "What is 3 * 3?"],
        "image": ["", IMAGE, ""],
    }
)


def last_user_text(body: dict) -> str:
    return next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")


def answers(body: dict) -> str:
    """A well-behaved model: 4 for 2 + 2, 9 for 3 * 3, red otherwise."""
    text = last_user_text(body)
    answer = "4" if "2 + 2" in text else "9" if "3 * 3" in text else "red"
    return f"Explanation: computed.\nAnswer: {answer}\nConfidence: 80%"


def answer_all(
    server, questions=QUESTIONS, generation=None, image_first=False, date=None, **answering
):
    endpoint = Endpoint(base_url=server.base_url, model="served-model", api_key="sk-secret")
    answerer = EndpointAnswerer(
        endpoint,
        GenerationConfig(**(generation or {"max_new_tokens": 64})),
        AnsweringConfig(backend="openai", **{"concurrency": 2, "max_retries": 2, **answering}),
        image_first=image_first,
        chat_template_date=date,
    )
    return list(answerer.answer_all(questions, progress=False))


def test_each_question_is_asked_with_hles_request_and_stored_as_one_record():
    with FakeJudgeServer(reply=answers) as server:
        chunks = answer_all(server)
    assert [len(c) for c in chunks] == [1, 1, 1]  # one by one, as they arrive
    records = pd.concat(chunks).set_index("id")
    assert list(records.columns) == list(RESPONSE_FIELDS[1:])
    assert records.loc["q-text", "response"].endswith("Answer: 4\nConfidence: 80%")
    assert records.loc["q-image", "response"].startswith("Explanation")
    assert records["finished"].all()  # finish_reason "stop"
    assert (records["response_tokens"] == 10).all()  # the server's usage, not a guess
    bodies = {last_user_text(r["body"]): r["body"] for r in server.requests}
    text = bodies["What is 2 + 2?"]
    assert text["model"] == "served-model"
    assert text["temperature"] == 0.0 and text["max_completion_tokens"] == 64
    assert text["messages"][0] == {
        "role": "system",
        "content": SYSTEM_PROMPT,  # a string, as HLE's request sends it
    }
    image = bodies["What colour is this pixel?"]
    # Llama 3.2 Vision refuses a system message with an image: the prompt goes in a user turn.
    assert image["messages"][0]["role"] == "user"
    assert image["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": IMAGE}}
    assert all(r["headers"]["authorization"] == "Bearer sk-secret" for r in server.requests)


def test_image_first_sends_the_image_before_the_question_under_its_own_key():
    """A served Llama 3.2 Vision reads only the text after its <|image|>: image_first puts the
    image part first; text-only questions are unchanged; answers of HLE's order are not reused."""
    with FakeJudgeServer(reply=answers) as server:
        records = pd.concat(answer_all(server, image_first=True)).set_index("id")
    assert records.loc["q-image", "response"].startswith("Explanation")
    bodies = {last_user_text(r["body"]): r["body"] for r in server.requests}
    image = bodies["What colour is this pixel?"]["messages"][-1]["content"]
    assert [part["type"] for part in image] == ["image_url", "text"]
    text = bodies["What is 2 + 2?"]["messages"][-1]["content"]
    assert [part["type"] for part in text] == ["text"]
    endpoint = Endpoint(base_url="http://127.0.0.1:8000/v1", model="m")
    generation, answering = GenerationConfig(), AnsweringConfig(backend="openai")
    hle_order = endpoint_key(endpoint, generation, answering)
    assert endpoint_key(endpoint, generation, answering, image_first=False) == hle_order
    assert endpoint_key(endpoint, generation, answering, image_first=True) != hle_order


def test_the_chat_template_date_is_sent_and_keyed_only_when_given():
    """Issue 28: vLLM, SGLang and transformers serve hand chat_template_kwargs to the template, so
    a served prompt writes model.chat_template_date, not the server's day; without a date the
    request is HLE's alone (a hosted API may refuse unknown fields) and the key is unchanged."""
    with FakeJudgeServer(reply=answers) as server:
        answer_all(server, QUESTIONS.iloc[:2], date="26 Jul 2024")
    assert [r["body"]["chat_template_kwargs"] for r in server.requests] == [
        {"date_string": "26 Jul 2024"}
    ] * 2
    with FakeJudgeServer(reply=answers) as server:
        answer_all(server, QUESTIONS.iloc[:1])
    assert "chat_template_kwargs" not in server.requests[0]["body"]
    endpoint = Endpoint(base_url="http://127.0.0.1:8000/v1", model="m")
    generation, answering = GenerationConfig(), AnsweringConfig(backend="openai")
    unsent = endpoint_key(endpoint, generation, answering)
    assert endpoint_key(endpoint, generation, answering, chat_template_date=None) == unsent
    dated = endpoint_key(endpoint, generation, answering, chat_template_date="26 Jul 2024")
    assert dated != unsent
    assert dated != endpoint_key(endpoint, generation, answering, chat_template_date="1 Jan 2025")


def test_the_openai_backend_sends_the_date_only_where_its_block_opts_in():
    from hle_reasoning.pipelines.evaluation.backends import served_answerer

    endpoints = AnswerEndpoints()
    block = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:8000/v1"}

    def answerer(**opt_in):
        answering = AnsweringConfig(**block, **opt_in)
        return served_answerer(
            answering, endpoints, GenerationConfig(), "baseline", chat_template_date="26 Jul 2024"
        )

    assert answerer().chat_template_date is None  # the default: HLE's request alone
    assert answerer().key == endpoint_key(
        Endpoint(block["base_url"], "m"), GenerationConfig(), AnsweringConfig(**block)
    )
    on = answerer(chat_template_kwargs=True)
    assert on.chat_template_date == "26 Jul 2024" and on.key != answerer().key


def test_sampling_sends_the_configured_temperature_top_p_and_seed():
    generation = {"max_new_tokens": 8, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    with FakeJudgeServer(reply=answers) as server:
        answer_all(server, QUESTIONS.iloc[:1], generation)
    body = server.requests[0]["body"]
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.6, 0.9, 0)


@pytest.mark.parametrize(
    ("status", "says"), [(401, "rejected the API key"), (404, "does not serve 'served-model'")]
)
def test_a_refused_key_or_unknown_model_stops_at_the_first_request(status, says):
    with FakeJudgeServer(always=status, reply=answers) as server:
        with pytest.raises(EndpointConfigError) as stopped:
            answer_all(server)
    assert len(server.requests) == 1  # not once per question
    assert says in str(stopped.value)
    assert "sk-secret" not in str(stopped.value)


def test_a_429_with_retry_after_is_retried_by_the_client_after_the_wait():
    with FakeJudgeServer(plan=[(429, 1)], reply=answers) as server:
        chunks = answer_all(server, QUESTIONS.iloc[:1])
    assert len(chunks) == 1 and "Answer: 4" in chunks[0]["response"].iloc[0]
    assert len(server.requests) == 2
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 0.9


def test_a_500_then_success_gives_the_answer_and_a_lasting_failure_leaves_it_out(caplog):
    with FakeJudgeServer(plan=[500], reply=answers) as server:
        chunks = answer_all(server, QUESTIONS.iloc[:1])
    assert len(server.requests) == 2 and len(chunks) == 1
    with FakeJudgeServer(plan=[500] * 3, reply=answers) as server:
        chunks = answer_all(server, max_retries=2)
    # The first question failed three times (1 + 2 retries): left out, the others answered.
    assert sorted(pd.concat(chunks)["id"]) == ["q-image", "q-three"]
    assert "1 question(s) failed" in caplog.text


def test_the_key_of_a_served_answer_follows_server_model_and_decoding_only():
    generation, answering = GenerationConfig(), AnsweringConfig(backend="openai")
    base = Endpoint(base_url="http://127.0.0.1:8000/v1", model="m", api_key="a")
    key = endpoint_key(base, generation, answering)
    assert key == endpoint_key(
        Endpoint(base.base_url, "m", api_key="other"),
        generation,
        AnsweringConfig(backend="openai", concurrency=1, max_retries=0),
    )
    assert key != endpoint_key(Endpoint(base.base_url, "m2"), generation, answering)
    assert key != endpoint_key(Endpoint("http://other/v1", "m"), generation, answering)
    assert key != endpoint_key(base, GenerationConfig(max_new_tokens=7), answering)


def test_endpoints_come_from_credentials_then_the_environment_and_hide_the_key(monkeypatch):
    monkeypatch.setenv("HLE_ANSWER_BASELINE_API_KEY", "sk-env")
    monkeypatch.setenv("HLE_ANSWER_DEEPSEEK_R1_BASE_URL", "https://api.example/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    endpoints = AnswerEndpointsDataset(
        credentials={"finetuned": {"api_key": "sk-cred", "model": "ft"}}
    ).load()
    assert endpoints.endpoint("baseline").api_key == "sk-env"
    assert endpoints.endpoint("finetuned").api_key == "sk-cred"
    assert endpoints.endpoint("finetuned").model == "ft"
    found = endpoints.endpoint("DeepSeek-R1")
    assert (found.base_url, found.api_key, found.api_key_source) == (
        "https://api.example/v1",
        "sk-openai",
        "env OPENAI_API_KEY",
    )
    assert "sk-" not in repr(endpoints) + repr(found) + repr(Endpoint("u", "m", "sk-x"))
    assert AnswerEndpoints().endpoint("x").base_url is None


def test_answering_credentials_with_an_unknown_field_are_refused():
    with pytest.raises(Exception, match="api_key, base_url and/or model"):
        AnswerEndpointsDataset(credentials={"baseline": {"token": "x"}})


@settings(max_examples=60, deadline=None)
@given(question=st.text(), role=st.sampled_from(["auto", "system", "user"]), image=st.booleans())
def test_request_messages_are_built_for_any_question_text(question, role, image):
    messages = request_messages(question, IMAGE if image else "", role)
    assert messages[-1]["content"][0] == {"type": "text", "text": question}
    assert any(p.get("type") == "image_url" for p in messages[-1]["content"]) == image
    assert messages[0]["content"] == SYSTEM_PROMPT  # a string, as HLE's request sends it
