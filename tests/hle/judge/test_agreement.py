"""The judge-agreement report: the rules judge against an LLM judge's verdicts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hle_reasoning.hle.judge.agreement import JudgedFileError, judge_agreement
from tests.conftest import SAMPLE, anchor
from tests.kedro_cli import kedro_run_in_process

QUESTIONS = pd.DataFrame(
    {
        "id": ["q1", "q2", "q3", "q4", "q5"],
        "category": ["Math", "Math", "Physics", "Math", "Physics"],
        "answer_type": ["exactMatch", "exactMatch", "multipleChoice", "exactMatch", "exactMatch"],
        "answer": ["12", "0.5", "B", "x^2", "Paris"],
    }
)


def entry(answer: str, llm: str) -> dict:
    return {
        "response": f"Explanation: e.\nAnswer: {answer}\nConfidence: 60%",
        "judge_response": {"correct_answer": "?", "correct": llm, "confidence": 60},
    }


def test_counts_agreement_false_accepts_and_false_rejects():
    judged = {
        "q1": entry("12", "yes"),  # both correct
        "q2": entry("1/2", "no"),  # the rules accept, the LLM does not: a false accept
        "q3": entry("B or C", "yes"),  # a hedge: the rules reject, the LLM accepts: false reject
        "q4": entry("x^3", "no"),  # both wrong
        "q5": entry("The capital, Paris", "yes"),  # words: a false reject
        "unknown": entry("1", "yes"),  # no such question: left out
        "q6": {"response": "no judgement"},  # not judged: left out
    }
    summary, differ = judge_agreement(judged, QUESTIONS)
    overall = summary.iloc[0]
    assert (overall["group"], overall["n"], overall["agreement"]) == ("all", 5, 40.0)
    assert (overall["false_accepts"], overall["false_rejects"]) == (1, 2)
    assert (overall["llm_correct"], overall["rules_correct"]) == (3, 2)
    by = summary.set_index(["group", "value"])
    assert by.loc[("answer_type", "multipleChoice"), "false_rejects"] == 1
    assert by.loc[("category", "Math"), "n"] == 3 and by.loc[("category", "Math"), "agreement"] == (
        pytest.approx(200 / 3)
    )
    assert by.loc[("rule", "hedge"), "false_rejects"] == 1
    assert differ["id"].tolist() == ["q2", "q3", "q5"]  # false accepts first
    assert differ["disagreement"].tolist() == ["false accept", "false reject", "false reject"]
    assert differ.loc[0, "rules_method"] in {"number", "math-verify"}


def test_a_malformed_judged_file_names_the_entry():
    with pytest.raises(JudgedFileError, match="q1: needs a 'response' string"):
        judge_agreement({"q1": {"judge_response": {"correct": "maybe"}}}, QUESTIONS, source="f")
    with pytest.raises(JudgedFileError, match="must be a JSON object"):
        judge_agreement([1, 2], QUESTIONS)  # type: ignore[arg-type]


def test_agreement_on_real_llm_judged_hle_answers():
    """878 real HLE answers (DeepWriter / Gemini 3 Pro) judged by an LLM judge: the rules judge
    must rarely accept what the LLM judge rejects, and agree on the large majority."""
    frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"), dtype=str)
    frame = frame[frame["id"].str.len() > 10]  # the final "Totals:" row
    verified = {
        row["id"]: row
        for row in map(json.loads, anchor("hle_verified_subset.jsonl").read_text().splitlines())
    }
    judged = {
        row.id: {
            "response": f"Explanation: see the report.\nAnswer: {row.extracted_answer or ''}\n"
            f"Confidence: {row.confidence or ''}",
            "judge_response": {"correct": "yes" if row.score == "1" else "no"},
        }
        for row in frame.fillna("").itertuples()
    }
    questions = pd.DataFrame(
        {
            "id": frame["id"],
            "answer": frame["answer"],
            # The CSV has no answer types: multiple choice questions list "Answer Choices".
            "answer_type": [
                "multipleChoice" if "Answer Choices" in q else "exactMatch"
                for q in frame["question"]
            ],
            "category": [verified.get(i, {}).get("category", "unknown") for i in frame["id"]],
        }
    )
    summary, differ = judge_agreement(judged, questions)
    overall = summary.iloc[0]
    assert overall["n"] == 878
    assert overall["false_accepts"] <= 0.01 * overall["n"]
    assert overall["agreement"] >= 85.0
    by = summary.set_index(["group", "value"])
    assert by.loc[("answer_type", "multipleChoice"), "agreement"] == 100.0
    assert len(differ) == overall["false_accepts"] + overall["false_rejects"]


@pytest.mark.slow
def test_kedro_run_judge_agreement_writes_the_report(project_copy, sample_questions):
    """The README's command on a judged file of the bundled sample's questions."""
    picked = sample_questions[sample_questions["answer_type"] == "exactMatch"].head(4)
    ids = picked["id"].tolist()
    answers = picked["answer"].astype(str).tolist()
    judged = {
        ids[0]: entry(answers[0], "yes"),
        ids[1]: entry(answers[1], "no"),  # a false accept
        ids[2]: entry("certainly not the answer", "no"),
        ids[3]: entry("certainly not the answer", "yes"),  # a false reject
    }
    path = project_copy / "judged.json"
    path.write_text(json.dumps(judged))
    result = kedro_run_in_process(
        project_copy,
        "--pipelines",
        "judge_agreement",
        "--params",
        f"judged={path},hle_source={SAMPLE}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "agrees with the LLM judge on 50.0% of 4 responses" in output
    reporting = project_copy / "data" / "08_reporting"
    summary = pd.read_csv(reporting / "judge_agreement.csv")
    assert summary.loc[0, ["n", "false_accepts", "false_rejects"]].tolist() == [4, 1, 1]
    differ = pd.read_csv(reporting / "judge_disagreements.csv")
    assert sorted(differ["id"]) == sorted([ids[1], ids[3]])
    assert not (reporting / "table_1.csv").exists()  # nothing of the study ran

    # A judged file that is not UTF-8 JSON: one message naming it, no traceback.
    path.write_bytes(b'{"q1": \xff')
    broken = kedro_run_in_process(
        project_copy, "--pipelines", "judge_agreement", "--params", f"judged={path}"
    )
    output = broken.stdout + broken.stderr
    assert broken.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "judged.json (dataset 'judged_responses'), read by node" in output
    assert "cannot be read (UnicodeDecodeError" in output
