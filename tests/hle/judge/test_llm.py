import logging

import pandas as pd
import pytest

from hle_reasoning.datasets.evaluation import JSONLinesStore, JudgeEndpointDataset
from hle_reasoning.hle.judge.llm import (
    JUDGE_PROMPT,
    JudgeConfigError,
    LLMJudge,
    credential_problems,
    judge_prompt,
)
from hle_reasoning.hle.judge.table import VERDICT_COLUMNS, judge_table
from tests.fake_openai import FakeJudgeServer

SECRET = "sk-test-0123456789abcdef-never-log-me"

QUESTIONS = pd.DataFrame(
    {
        "id": ["q1", "q2", "q3"],
        "question": ["What is 2+2?", "Pick one: A) red B) blue", "Name the prime after 7."],
        "answer": ["4", "B", "11"],
        "answer_type": ["exactMatch", "multipleChoice", "exactMatch"],
    }
)
RESPONSES = pd.DataFrame(
    {
        "id": ["q1", "q2", "q3"],
        "response": [
            "Explanation: sum.\nAnswer: 4\nConfidence: 90%",
            "Explanation: sky.\nAnswer: A\nConfidence: 40%",
            "I do not know.",
        ],
    }
)


class LogCapture(logging.Handler):
    """Every log record of the run, formatted (the suite runs with ``-p no:logging``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs():
    handler, root = LogCapture(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def run_judge(judge, store):
    for i, chunk in enumerate(
        judge_table(
            QUESTIONS, RESPONSES, store.load(), judge="llm", llm=judge, workers=2, progress=False
        )
    ):
        store.replace(chunk) if i == 0 else store.append(chunk)  # the stored ones first
    return store.load().set_index("id")


def test_prompt_is_the_official_one():
    prompt = judge_prompt("Q?", "Answer: 4", "4")
    assert prompt.startswith("Judge whether the following [response] to [question] is correct")
    assert "[correct_answer]: 4" in prompt
    assert prompt.endswith("Put 100 if there is no confidence score available.")
    assert "0|\\%| and 100|\\%|" in JUDGE_PROMPT  # the official raw string, escapes included


def test_judges_retries_and_caches(tmp_path, logs):
    store = JSONLinesStore(filepath=str(tmp_path / "verdicts.jsonl"), columns=list(VERDICT_COLUMNS))
    with FakeJudgeServer(fail_first=1) as server:
        judge = LLMJudge(model="judge-model", base_url=server.base_url, api_key=SECRET)
        verdicts = run_judge(judge, store)
        first_requests = len(server.requests)

        # A rerun finds every verdict stored: no request at all.
        again = run_judge(judge, store)
        assert len(server.requests) == first_requests

    assert first_requests == 4  # one HTTP 500, retried by the client, then three judgements
    assert verdicts.loc["q1", "correct"] and verdicts.loc["q1", "confidence"] == 90
    assert not verdicts.loc["q2", "correct"] and verdicts.loc["q2", "extracted_answer"] == "A"
    assert verdicts.loc["q3", "confidence"] == 100  # no confidence stated
    assert pd.isna(verdicts.loc["q3", "extracted_answer"])  # the judge said 'None'
    assert set(verdicts["method"]) == {"llm"} and set(verdicts["judge"]) == {"llm:judge-model"}
    assert list(store.load().columns) == list(VERDICT_COLUMNS)
    pd.testing.assert_frame_equal(again, verdicts)

    # What went over the wire: the official prompt as one user message, structured output with
    # the official fields, the official token budget, and the key only in the auth header.
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert body["model"] == "judge-model" and body["max_completion_tokens"] == 4096
    assert [m["role"] for m in body["messages"]] == ["user"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {
        "extracted_final_answer",
        "reasoning",
        "correct",
        "confidence",
    }
    assert schema["properties"]["correct"]["enum"] == ["yes", "no"]

    # The key never reaches the logs or the stored verdicts.
    assert "Retrying request" in logs.text  # the client's retry was logged...
    assert SECRET not in logs.text  # ...without the key, even at DEBUG (HTTP headers)
    assert SECRET not in (tmp_path / "verdicts.jsonl").read_text()
    assert SECRET not in repr(judge)


def test_a_judgement_that_keeps_failing_is_left_unjudged_and_judged_next_run(tmp_path, logs):
    store = JSONLinesStore(filepath=str(tmp_path / "verdicts.jsonl"), columns=list(VERDICT_COLUMNS))
    with FakeJudgeServer(fail_first=100) as server:
        judge = LLMJudge(base_url=server.base_url, api_key=SECRET, max_retries=2)
        verdicts = run_judge(judge, store)
        assert len(server.requests) == 9  # 3 responses x 3 attempts (the client's retries)
        assert verdicts.empty
        assert "3 judgement(s) failed and are left unjudged" in logs.text
        server.fail_first = 0
        verdicts = run_judge(judge, store)
    assert len(verdicts) == 3


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "rejected the API key: set a valid key in HLE_JUDGE_API_KEY"),
        (403, "may not use the judge model 'judge-model'"),
        (404, "does not serve the judge model 'judge-model'"),
        (400, "refused the request for 'judge-model'"),
    ],
)
def test_a_refused_configuration_stops_at_the_first_request(tmp_path, status, says):
    store = JSONLinesStore(filepath=str(tmp_path / "verdicts.jsonl"), columns=list(VERDICT_COLUMNS))
    with FakeJudgeServer(always=status) as server:
        judge = LLMJudge(model="judge-model", base_url=server.base_url, api_key=SECRET)
        with pytest.raises(JudgeConfigError) as raised:
            run_judge(judge, store)
        assert len(server.requests) == 1  # never retried, no second question asked
        with pytest.raises(JudgeConfigError):  # the judge stays stopped, without a request
            judge.judge("Q?", "Answer: 4", "4")
        assert len(server.requests) == 1
    message = str(raised.value)
    assert says in message and f"HTTP {status}" in message
    assert "evaluation.judge.kind=rules" in message
    assert SECRET not in message
    assert store.load().empty  # nothing counted as an answer


def test_a_refusal_after_judgements_keeps_them(tmp_path):
    store = JSONLinesStore(filepath=str(tmp_path / "verdicts.jsonl"), columns=list(VERDICT_COLUMNS))
    with FakeJudgeServer(plan=[None, None, 401]) as server:
        judge = LLMJudge(base_url=server.base_url, api_key=SECRET)
        chunks = []
        with pytest.raises(JudgeConfigError):
            for i, chunk in enumerate(judge_table(
                QUESTIONS, RESPONSES, store.load(), judge="llm", llm=judge, workers=1,
                progress=False,
            )):  # fmt: skip
                chunks.append(chunk)
                store.replace(chunk) if i == 0 else store.append(chunk)
        assert len(server.requests) == 3
    assert len(store.load()) == 2  # the two judged before the refusal are kept


def test_rate_limit_waits_as_the_server_says(tmp_path):
    with FakeJudgeServer(plan=[(429, 1)]) as server:
        judge = LLMJudge(base_url=server.base_url, api_key=SECRET)
        verdict = judge.judge("What is 2+2?", "Answer: 4\nConfidence: 70%", "4")
        assert len(server.requests) == 2
        waited = server.requests[1]["time"] - server.requests[0]["time"]
    assert verdict is not None and verdict.correct and verdict.confidence == 70
    assert waited >= 1.0  # Retry-After: 1, honoured by the client


def test_server_error_then_success(tmp_path):
    with FakeJudgeServer(plan=[500, 503]) as server:
        verdict = LLMJudge(base_url=server.base_url, api_key=SECRET).judge("Q", "Answer: 4", "4")
        assert len(server.requests) == 3
    assert verdict is not None and verdict.correct


def test_an_unparsable_judgement_is_asked_once_more(tmp_path, logs):
    with FakeJudgeServer(plan=["garbage"]) as server:
        verdict = LLMJudge(base_url=server.base_url, api_key=SECRET).judge("Q", "Answer: 4", "4")
        assert len(server.requests) == 2
    assert verdict is not None and verdict.correct
    with FakeJudgeServer(plan=["garbage", "garbage"]) as server:
        verdict = LLMJudge(base_url=server.base_url, api_key=SECRET).judge("Q", "Answer: 4", "4")
        assert len(server.requests) == 2  # once more, not forever
    assert verdict is None
    assert "attempt 2" in logs.text


def test_a_changed_response_or_judge_is_judged_again(tmp_path):
    store = JSONLinesStore(filepath=str(tmp_path / "verdicts.jsonl"), columns=list(VERDICT_COLUMNS))
    with FakeJudgeServer() as server:
        run_judge(LLMJudge(model="a", base_url=server.base_url, api_key=SECRET), store)
        run_judge(LLMJudge(model="b", base_url=server.base_url, api_key=SECRET), store)
        assert len(server.requests) == 6
    assert set(store.load()["judge"]) == {"llm:b"}  # stale verdicts dropped from the store


def test_missing_key_is_a_clear_error():
    with pytest.raises(JudgeConfigError, match="HLE_JUDGE_API_KEY"):
        LLMJudge(api_key=None)
    # A local server needs no key.
    LLMJudge(api_key=None, base_url="http://127.0.0.1:9/v1")
    assert credential_problems(None, "http://127.0.0.1:9/v1") == []
    assert credential_problems("sk-x", None) == []
    (problem,) = credential_problems(None, None)
    assert "HLE_JUDGE_API_KEY" in problem and "evaluation.judge.kind=rules" in problem


class TestJudgeEndpointDataset:
    def test_credentials_first_then_environment(self, monkeypatch):
        monkeypatch.setenv("OPENAI_API_KEY", "from-openai-env")
        monkeypatch.setenv("HLE_JUDGE_BASE_URL", "http://127.0.0.1:1/v1")
        endpoint = JudgeEndpointDataset().load()
        assert endpoint.api_key == "from-openai-env"
        assert endpoint.api_key_source == "env OPENAI_API_KEY"
        assert endpoint.base_url == "http://127.0.0.1:1/v1" and endpoint.model is None
        monkeypatch.setenv("HLE_JUDGE_API_KEY", "from-hle-env")
        assert JudgeEndpointDataset().load().api_key == "from-hle-env"
        dataset = JudgeEndpointDataset(credentials={"api_key": SECRET, "model": "m"})
        endpoint = dataset.load()
        assert endpoint.api_key == SECRET and endpoint.model == "m"
        assert endpoint.api_key_source == "credentials"
        assert SECRET not in repr(endpoint) and SECRET not in str(dataset)
        assert "***" in repr(endpoint)

    def test_unknown_credential_keys(self):
        with pytest.raises(Exception, match="unknown key"):
            JudgeEndpointDataset(credentials={"token": "x"})

    def test_no_key_anywhere_loads(self, monkeypatch):
        for name in (
            "HLE_JUDGE_API_KEY",
            "OPENAI_API_KEY",
            "HLE_JUDGE_BASE_URL",
            "OPENAI_BASE_URL",
        ):
            monkeypatch.delenv(name, raising=False)
        assert JudgeEndpointDataset().load().api_key is None
