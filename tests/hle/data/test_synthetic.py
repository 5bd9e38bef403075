"""The bundled sample is what its generator writes, and covers every branch the study has."""

import json

from hle_reasoning.hle.data.schema import CATEGORIES
from hle_reasoning.hle.data.synthetic import CANARY, write_sample
from tests.conftest import SAMPLE


def test_sample_is_regenerated_byte_for_byte(tmp_path):
    out = write_sample(tmp_path / "sample.jsonl")
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_sample_covers_every_branch(sample_questions):
    raw = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert all(r["canary"] == CANARY for r in raw)  # labelled synthetic, row by row
    assert any(isinstance(r["answer"], int) for r in raw)  # JSON numbers, as real exports have
    df = sample_questions
    assert set(df["category"]) == set(CATEGORIES)
    assert set(df["answer_type"]) == {"exactMatch", "multipleChoice"}
    images = df.loc[df["image"] != "", "image"]
    assert (
        images.str.startswith("data:image/png").any()
        and images.str.startswith("data:image/jpeg").any()
    )
    assert df["answer"].str.contains(r"\\frac|\\sqrt|\\pi").any()  # LaTeX answers
    assert df["answer"].isin(list("ABCDE")).sum() == (df["answer_type"] == "multipleChoice").sum()
    # One text question duplicated under two ids: the leak branch.
    text_only = df[df["image"] == ""]
    assert text_only.duplicated(["question"]).sum() == 1
