import base64
import hashlib
import io
import json

import pandas as pd
import pytest
from PIL import Image

from hle_reasoning.hle.data.schema import (
    CATEGORIES,
    HLEDataError,
    answer_to_text,
    decode_image,
    is_hub_id,
    load_image,
    read_export,
    validate_hle,
)


def _png_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


PNG_1PX = _png_uri()


def frame(**overrides) -> pd.DataFrame:
    base = {
        "id": ["q1", "q2"],
        "question": ["What is 1+1?", "Pick one.\n\nAnswer Choices:\nA. x\nB. y"],
        "image": ["", PNG_1PX],
        "answer": ["2", "B"],
        "answer_type": ["exactMatch", "multipleChoice"],
        "category": ["Math", "Other"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_valid_frame_passes_and_keeps_values():
    out = validate_hle(frame(), "f.jsonl")
    assert out["answer"].tolist() == ["2", "B"]
    assert load_image(out.loc[1, "image"]).size == (1, 1)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (9, "9"),
        (0.04147, "0.04147"),
        (False, "False"),
        (True, "True"),
        (15178, "15178"),
        (2.0, "2"),
        ("x", "x"),
    ],
)
def test_answer_coercion(value, text):
    assert answer_to_text(value) == text


def test_missing_columns_are_named():
    with pytest.raises(
        HLEDataError, match=r"f\.jsonl: missing required column\(s\) \['answer_type'\]"
    ):
        validate_hle(frame().drop(columns=["answer_type"]), "f.jsonl")


def test_duplicate_ids_are_named():
    with pytest.raises(HLEDataError, match=r"id 'q1', column 'id': appears 2 times"):
        validate_hle(frame(id=["q1", "q1"]), "f.jsonl")


def test_unknown_answer_type_names_row_and_column():
    with pytest.raises(HLEDataError) as err:
        validate_hle(frame(answer_type=["exactMatch", "freeText"]), "data/x.parquet")
    message = str(err.value)
    assert message.startswith("data/x.parquet: 1 problem(s)")
    assert "id 'q2', column 'answer_type': 'freeText' is not one of" in message


def test_undecodable_image_names_row_and_column():
    bad = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    with pytest.raises(HLEDataError, match=r"id 'q2', column 'image': not a decodable image"):
        validate_hle(frame(image=["", bad]), "f.jsonl")


def test_truncated_png_is_refused():
    # PIL raises SyntaxError (not OSError) for a PNG whose checksum is wrong.
    raw = bytearray(base64.b64decode(PNG_1PX.split(",", 1)[1]))
    raw[-20] ^= 0xFF
    broken = "data:image/png;base64," + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(HLEDataError, match=r"id 'q2', column 'image': not a decodable image"):
        validate_hle(frame(image=["", broken]), "f.jsonl")


def test_image_that_is_not_a_data_uri():
    with pytest.raises(HLEDataError, match=r"id 'q2', column 'image'.*data URI"):
        validate_hle(frame(image=["", "https://example.com/x.png"]), "f.jsonl")


def test_empty_answer_and_question_are_named():
    with pytest.raises(HLEDataError) as err:
        validate_hle(frame(answer=[None, "B"], question=["", "ok"]), "f.jsonl")
    assert "id 'q1', column 'answer'" in str(err.value)
    assert "id 'q1', column 'question'" in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(HLEDataError, match="3 problem"):
        validate_hle(frame(answer_type=["bad", "bad"], category=["", "Math"]), "f.jsonl")


def test_empty_export():
    with pytest.raises(HLEDataError, match="holds no questions"):
        validate_hle(frame().iloc[0:0], "f.jsonl")


def test_validation_does_not_modify_its_input():
    raw = frame(answer=[2, "B"])
    before = raw.copy()
    validate_hle(raw, "f.jsonl")
    pd.testing.assert_frame_equal(raw, before)


def test_read_export_formats_agree(tmp_path):
    records = frame(answer=[2, "B"]).to_dict("records")
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    as_json = tmp_path / "x.json"
    as_json.write_text(json.dumps(records))
    parquet = tmp_path / "x.parquet"
    validate_hle(read_export(jsonl), "x").to_parquet(parquet)
    outs = [validate_hle(read_export(p), str(p)) for p in (jsonl, as_json, parquet)]
    for out in outs[1:]:
        pd.testing.assert_frame_equal(outs[0], out)


def test_read_export_errors_name_the_file(tmp_path):
    with pytest.raises(HLEDataError, match="no such file"):
        read_export(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n{broken\n')
    with pytest.raises(HLEDataError, match=r"bad\.jsonl, line 2: not valid JSON"):
        read_export(bad)
    csv = tmp_path / "x.csv"
    csv.write_text("id\n")
    with pytest.raises(HLEDataError, match="unsupported file type '.csv'"):
        read_export(csv)


def test_hub_ids_and_paths():
    assert is_hub_id("cais/hle")
    assert is_hub_id("someone/hle-copy")
    assert not is_hub_id("data/01_raw/hle_sample.jsonl")
    assert not is_hub_id("./x/y")


def test_decode_image_rejects_bad_base64():
    with pytest.raises(ValueError, match="base64"):
        decode_image("data:image/png;base64,@@@")


def test_real_hle_export_validates_with_its_quirks(real_hle_path):
    raw_bytes = real_hle_path.read_bytes()
    raw = read_export(real_hle_path)
    non_string = [a for a in raw["answer"] if not isinstance(a, str)]
    assert len(non_string) == 24  # JSON numbers and booleans, as the anchors' README says
    out = validate_hle(raw, str(real_hle_path))
    assert len(out) == 595 and out["id"].is_unique
    assert all(isinstance(a, str) and a for a in out["answer"])
    assert set(out["category"]) == set(CATEGORIES)
    assert (out["image"] != "").sum() == 53
    for uri in out.loc[out["image"] != "", "image"].head(5):
        assert load_image(uri).size[0] > 0
    # The source file is never modified.
    assert hashlib.sha256(real_hle_path.read_bytes()).digest() == hashlib.sha256(raw_bytes).digest()


def test_an_absurdly_long_question_passes_with_a_warning(caplog):
    huge = (
        "Let x be the number of primes below 10. " * 52_000
    )  # 2 MB: a pasted file, not a question
    with caplog.at_level("WARNING", logger="hle_reasoning.hle.data.schema"):
        out = validate_hle(frame(question=[huge, "What is 1+1?"]), "f.jsonl")
    assert out.loc[0, "question"] == huge  # never modified: evaluation cuts its prompt
    (warning,) = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert "f.jsonl: 1 question(s) longer than 100000 characters" in warning and "q1" in warning
