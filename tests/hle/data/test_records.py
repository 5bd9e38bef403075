"""Stored records a rerun reuses: their content keys and the rows still valid."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from hle_reasoning.hle.data.records import content_key, resume, reusable
from hle_reasoning.hle.formatting import markdown_table

COLUMNS = ("id", "key", "response")


def test_a_rerun_keeps_the_last_valid_row_of_each_question_in_the_stores_columns():
    stored = pd.DataFrame(
        {
            "id": ["q1", "q2", "q1", "q3", "q2"],
            "key": ["a", "a", "a", "a", "stale"],
            "response": ["first", "two", "second", "three", "old"],
            "extra": [1, 2, 3, 4, 5],
        }
    )
    kept = reusable(stored, key_column="key", keys={"a"}, ids={"q1", "q2"}, columns=COLUMNS)
    assert kept.to_dict("records") == [
        {"id": "q2", "key": "a", "response": "two"},
        {"id": "q1", "key": "a", "response": "second"},  # the later of the two
    ]
    assert list(kept.index) == [0, 1]
    # Without ids every question counts; several keys may be valid (one verdict per judgement).
    every = reusable(
        stored, key_column="key", keys=["a", "stale"], unique=("id", "key"), columns=COLUMNS
    )
    assert sorted(every["response"]) == ["old", "second", "three", "two"]


def test_an_empty_store_gives_an_empty_table_of_the_stores_columns():
    kept = reusable(pd.DataFrame(), key_column="key", keys={"a"}, columns=COLUMNS)
    assert kept.empty and list(kept.columns) == list(COLUMNS)


def test_a_content_key_is_the_sha256_of_the_json_cut_to_its_length():
    value = {"b": [1, 2], "a": "é"}
    text = json.dumps(value, sort_keys=True)
    assert content_key(value, 16) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert content_key({"a": "é", "b": [1, 2]}, 16) == content_key(value, 16)  # order-free
    unsorted = hashlib.sha256(json.dumps(value).encode()).hexdigest()[:24]
    assert content_key(value, 24, sort_keys=False) == unsorted  # keys stored in that order
    assert len(content_key(object(), 12)) == 12  # no JSON for it: its text


def test_a_markdown_table_aligns_the_columns_it_is_told_to():
    table = markdown_table(["name", "n", "note"], [["All", 3, ""], ["Math", 2, "x"]], "lr")
    assert table.splitlines() == [
        "| name | n | note |",
        "|---|---:|---|",
        "| All | 3 |  |",
        "| Math | 2 | x |",
    ]


def test_resume_yields_the_stored_rows_still_wanted_then_what_make_gives_for_the_rest():
    stored = pd.DataFrame(
        {
            "id": ["q1", "q2", "q3", "q1"],
            "key": ["a", "b", "a", "a"],
            "response": ["old", "other setup", "dropped: not wanted", "kept"],
        }
    )
    wanted = pd.DataFrame({"id": ["q1", "q2"], "key": ["a", "a"], "question": ["one", "two"]})
    seen = {}

    def make(todo, kept):
        seen["todo"], seen["kept"] = todo["question"].tolist(), len(kept)
        yield todo[["id", "key"]].assign(response="new")

    chunks = list(resume(stored, wanted, key_column="key", columns=COLUMNS, make=make))
    assert chunks[0].to_dict("records") == [{"id": "q1", "key": "a", "response": "kept"}]
    assert seen == {"todo": ["two"], "kept": 1}  # q2 is stored under another key only
    assert chunks[1].to_dict("records") == [{"id": "q2", "key": "a", "response": "new"}]
    # A row is reused for its own (id, key) pair only: the same key under another id is not.
    other = pd.DataFrame({"id": ["q9"], "key": ["a"], "response": ["x"]})
    first = next(resume(other, wanted, key_column="key", columns=COLUMNS, make=make))
    assert first.empty and list(first.columns) == list(COLUMNS)
