"""Dead servers and unfinished runs: a closed port stops the LLM judge, an ``openai`` variant
and a comparison model after ``unreachable_after`` connection failures in a row, in one message
naming the parameter and the address, with what was stored kept; a run that leaves questions
unanswered or unjudged is recorded FAILED with the counts."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from hle_reasoning.completeness import IncompleteRunError, completeness
from hle_reasoning.config import AnsweringConfig, GenerationConfig
from hle_reasoning.datasets.evaluation import JSONLinesStore
from hle_reasoning.hle.judge.llm import LLMJudge
from hle_reasoning.hle.judge.table import VERDICT_COLUMNS, judge_table
from hle_reasoning.hooks import StudySummaryHook
from hle_reasoning.launch import project_error
from hle_reasoning.modeling.openai_backend import Endpoint, EndpointAnswerer
from hle_reasoning.unreachable import EndpointUnreachableError
from tests.hle.judge.test_llm import QUESTIONS, RESPONSES
from tests.pipelines.evaluation_runs import answer_into, plan_for, responses_store


@pytest.fixture
def closed_port() -> str:
    """The base URL of a port where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_the_judge_stops_after_unreachable_after_failures_and_keeps_stored_verdicts(
    tmp_path, closed_port
):
    store = JSONLinesStore(filepath=str(tmp_path / "v.jsonl"), columns=list(VERDICT_COLUMNS))
    judge = LLMJudge(base_url=closed_port, api_key="sk-x", max_retries=0, unreachable_after=2)
    stored = pd.DataFrame(
        [{"id": "q1", "judge_key": judge.key("What is 2+2?", RESPONSES.response[0], "4"),
          "method": "llm:x", "correct": True, "extracted_answer": "4", "confidence": 90,
          "reason": "ok"}]
    ).reindex(columns=list(VERDICT_COLUMNS))  # fmt: skip
    store.save(stored)
    with pytest.raises(EndpointUnreachableError) as raised:
        for i, chunk in enumerate(judge_table(
            QUESTIONS, RESPONSES, store.load(), judge="llm", llm=judge, workers=2, progress=False
        )):  # fmt: skip
            store.replace(chunk) if i == 0 else store.append(chunk)  # the stored ones first
    message = str(raised.value)
    assert closed_port in message and "evaluation.judge.llm.base_url" in message
    assert "evaluation.judge.llm.unreachable_after = 2" in message
    assert "kedro run --pipelines evaluation" in message
    assert store.load()["id"].tolist() == ["q1"]  # the stored verdict is kept


def test_an_openai_variant_and_a_comparison_model_stop_at_a_closed_port(closed_port, tmp_path):
    questions = QUESTIONS.assign(image="")
    answerer = EndpointAnswerer(
        Endpoint(base_url=closed_port, model="served"),
        GenerationConfig(max_new_tokens=8),
        AnsweringConfig(backend="openai", max_retries=0, concurrency=2),
        parameter="evaluation.answering.baseline",
    )
    with pytest.raises(EndpointUnreachableError) as raised:
        list(answerer.answer_all(pd.concat([questions] * 3, ignore_index=True), progress=False))
    message = str(raised.value)
    assert f"{closed_port} (evaluation.answering.baseline.base_url)" in message
    assert "evaluation.answering.baseline.unreachable_after = 3" in message

    model = {"name": "R1", "base_url": closed_port, "model": "r1", "max_retries": 0}
    plan = plan_for(
        "unused-base-model",
        {"name_or_path": "tiny"},
        generation={"max_new_tokens": 8},
        comparison_models=[model],
    )
    store = responses_store(tmp_path)
    with pytest.raises(Exception) as raised:  # Kedro wraps a dataset's error in its own
        answer_into(store, plan, questions, "R1")
    assert store.load().empty  # the stored answers (none) are written first, then the stop
    stopped = project_error(raised.value, (EndpointUnreachableError,))
    assert re.search(r"evaluation\.comparison_models\[0\]", str(stopped))


def test_an_incomplete_run_is_refused_with_the_counts_per_model():
    """The MLflow side (FAILED, ``hle_reasoning.unjudged``) is checked on a real ``kedro run``:
    tests/pipelines/test_evaluation.py, the LLM judge's run."""
    predictions = pd.DataFrame(
        {"id": ["a", "b", "c"], "response": ["x", "y", None], "judged": [True, False, False]}
    )
    assert completeness("baseline.predictions", predictions) == {"baseline": (3, 2, 1)}
    stacked = predictions.assign(variant=["R1", "R1", "GPT"])
    assert completeness("comparison_models_predictions", stacked) == {
        "GPT": (1, 0, 0),
        "R1": (2, 2, 1),
    }
    assert completeness("focus_test", predictions) == {}
    # The chain's predictions: one table per variant's file, each with its variant column.
    assert completeness("predictions", {"r1": stacked[:2], "gpt": stacked[2:]}) == {
        "GPT": (1, 0, 0),
        "R1": (2, 2, 1),
    }

    hook = StudySummaryHook()
    hook.before_pipeline_run({}, None, None)
    complete = predictions.assign(judged=True, response="r")
    hook.after_node_run(None, None, {}, {"finetuned.predictions": complete})
    hook.refuse_incomplete(["evaluation"])  # complete: nothing happens
    hook.after_node_run(None, None, {}, {"baseline.predictions": predictions})
    with pytest.raises(IncompleteRunError) as raised:
        hook.refuse_incomplete(["evaluation"])
    message = str(raised.value)
    assert "1 question(s) unanswered, 1 answer(s) unjudged" in message
    assert "baseline: 2 of 3 answered, 1 judged" in message and "finetuned" not in message
    assert "`kedro run --pipelines evaluation`" in message


CHAT = {"id": "x", "object": "chat.completion", "created": 0, "model": "m"}
REPLIES = {
    "a proxy's HTML page": (b"<html>log in</html>", "text/html"),
    "a JSON list": (b"[1, 2]", "application/json"),
    "no choices": (json.dumps({**CHAT, "choices": None}).encode(), "application/json"),
    "odd usage, content parts": (
        json.dumps(
            {
                **CHAT,
                "usage": {"prompt_tokens": None, "completion_tokens": "many"},
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": [{"type": "text", "text": "Answer: 4"}],
                        },
                    }
                ],
            }
        ).encode(),
        "application/json",
    ),  # fmt: skip
}


@pytest.fixture
def odd_server():
    """A server at base_url that answers every POST with ``server.reply`` (body, content type)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body, kind = server.reply
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("reply", list(REPLIES))
def test_a_reply_that_is_no_chat_completion_is_a_failed_request_never_a_traceback(
    odd_server, reply
):
    odd_server.reply = REPLIES[reply]
    answerer = EndpointAnswerer(
        Endpoint(base_url=odd_server.base_url, model="m"),
        GenerationConfig(max_new_tokens=8),
        AnsweringConfig(backend="openai", max_retries=0, concurrency=1),
    )
    judge = LLMJudge(base_url=odd_server.base_url, api_key="sk-x", max_retries=0)
    questions = QUESTIONS.assign(image="")
    if reply == "odd usage, content parts":  # a usable answer: kept, the odd counts left out
        (record,) = [
            c.iloc[0].to_dict() for c in answerer.answer_all(questions.iloc[:1], progress=False)
        ]
        assert record["response"] == "Answer: 4" and record["prompt_tokens"] is None
        assert judge.judge("q", "r", "4") is None  # no judgement in it: unjudged
        return
    with pytest.raises(EndpointUnreachableError, match="gave no usable reply 3 times in a row"):
        list(answerer.answer_all(questions, progress=False))
    assert judge.judge("q", "r", "4") is None


def test_a_run_stopped_by_an_unreachable_server_or_judge_is_tagged_with_the_known_counts(
    tmp_path, closed_port, mlflow_store
):
    """Issue 29: a run that stops on an error gets the count tags a complete-but-partial run
    gets, from the stores on disk against what the run wanted: ``unanswered`` when answering
    stopped (``unjudged`` unknown: the judge never ran), both when judging stopped."""
    from kedro.io import DataCatalog

    from hle_reasoning.completeness import UNANSWERED_TAG, UNJUDGED_TAG
    from hle_reasoning.config import DistributedConfig
    from hle_reasoning.datasets.evaluation import JudgeEndpoint
    from hle_reasoning.datasets.stores import VariantStore
    from hle_reasoning.pipelines.evaluation import nodes
    from tests.fake_openai import FakeJudgeServer

    questions = QUESTIONS.assign(image="")
    answers = responses_store(tmp_path)
    verdicts = VariantStore(
        filepath=str(tmp_path / "{variant}" / "verdicts.jsonl"),
        key_column="judge_key",
        columns="hle_reasoning.hle.judge.table.VERDICT_COLUMNS",
    )
    catalog = DataCatalog({"responses": answers, "verdicts": verdicts})
    mlflow = mlflow_store

    def stopped_run(plan, variant: str, judge: bool = False) -> dict[str, str]:
        """The answering (or, with ``judge``, the judging) node of ``variant`` run as Kedro runs
        it under the hook, its save stopped by the server; the MLflow run's tags."""
        hook = StudySummaryHook()
        hook.before_pipeline_run({}, None, None)
        run = mlflow.start_run(run_name="evaluation")
        try:
            hook.before_node_run(None, None, {}, False, "r")
            wanted = nodes.answer_questions(plan, questions, None, None, DistributedConfig())
            hook.after_node_run(None, None, {}, {"responses": wanted})
            outputs, store = {"responses": wanted}, answers
            if judge:
                answers.save({variant: wanted[variant]})
                judged = nodes.judge_responses(plan, questions, answers.load())
                hook.after_node_run(None, None, {}, {"verdicts": judged})
                outputs, store = {"verdicts": judged}, verdicts
            with pytest.raises(Exception) as raised:
                store.save({variant: next(iter(outputs.values()))[variant]})
            hook.on_pipeline_error(raised.value, {}, None, catalog)
        finally:
            mlflow.end_run("FAILED")
        tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags
        return {k: v for k, v in tags.items() if k in (UNANSWERED_TAG, UNJUDGED_TAG)}

    with FakeJudgeServer(reply=lambda body: "Answer: 4\nConfidence: 90%") as server:
        base_url = server.base_url
        model = {"name": "R1", "base_url": base_url, "model": "r1", "max_retries": 0,
                 "unreachable_after": 1}  # fmt: skip
        plan = plan_for(
            "unused-base-model",
            {"name_or_path": "tiny"},
            generation={"max_new_tokens": 8},
            comparison_models=[model],
        )
        answers.save({"R1": nodes.answer_questions(
            plan, questions.iloc[:1], None, None, DistributedConfig()
        )["R1"]})  # fmt: skip
    # The server is gone: R1's q1 stays answered, q2 and q3 are not; the local baseline and
    # fine-tuned variants, wanted by the run too, have no answer (3 questions each).
    assert stopped_run(plan, "R1") == {UNANSWERED_TAG: str(2 + 3 + 3)}

    # R1 answered by a live server, judged by a dead one: its 3 answers unjudged.
    with FakeJudgeServer(reply=lambda body: "Answer: 4\nConfidence: 90%") as server:
        model = {"name": "R1", "base_url": server.base_url, "model": "r1", "max_retries": 0}
        judged_plan = plan_for(
            "unused-base-model",
            {"name_or_path": "tiny"},
            JudgeEndpoint(base_url=closed_port, api_key="sk-x"),
            generation={"max_new_tokens": 8},
            comparison_models=[model],
            judge={"kind": "llm", "llm": {"max_retries": 0, "unreachable_after": 1}},
        )
        tags = stopped_run(judged_plan, "R1", judge=True)
    assert tags == {UNANSWERED_TAG: str(3 + 3), UNJUDGED_TAG: "3"}
