"""The bundled sample is what its generator writes, and covers every branch the study has."""

import json

from hle_reasoning.hle.data.schema import CATEGORIES, read_export, validate_hle
from hle_reasoning.hle.data.synthetic import CANARY, write_sample
from hle_reasoning.modeling.models import load_tokenizer, tiny_tokenizer_dir
from hle_reasoning.modeling.tiny_tokenizer import train_tiny_tokenizer
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


def test_bundled_tokenizer_is_the_one_trained_on_the_sample():
    texts = [f"{q}\n{a}" for q, a in zip(*_texts(), strict=True)]
    retrained = train_tiny_tokenizer(texts)
    bundled = load_tokenizer("tiny")
    assert retrained.get_vocab() == bundled.get_vocab()
    assert (tiny_tokenizer_dir() / "tokenizer.json").exists()


def _texts():
    df = validate_hle(read_export(SAMPLE), str(SAMPLE))
    raw = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    return df["question"].tolist(), [r["answer"] for r in raw]
