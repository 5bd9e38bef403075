"""Hostile exports: whatever the bytes of the file or of an image payload, reading and validating
an export gives a frame or one ``HLEDataError`` naming the file, the line or id, and the column;
images are bounded by ``max_image_pixels`` wherever they are opened."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hle_reasoning.hle.data import images
from hle_reasoning.hle.data.prompts import prompt_images
from hle_reasoning.hle.data.schema import HLEDataError, load_image, read_export, validate_hle


def png(width: int = 4, height: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 255)).save(buf, format="PNG")
    return buf.getvalue()


def claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` (a decompression bomb's header:
    the real one compresses 400 M pixels of one colour to a few hundred KB)."""
    raw = bytearray(png(1, 1))
    ihdr = bytes(raw[12:16]) + struct.pack(">II", width, height) + bytes(raw[24:29])
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(raw)


def uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def record(qid: str = "q1", image: str = "", **fields) -> dict:
    return {
        "id": qid,
        "question": "What is 1+1?",
        "image": image,
        "answer": "2",
        "answer_type": "exactMatch",
        "category": "Math",
        **fields,
    }


@pytest.mark.parametrize(
    ("width", "height", "says"),
    [
        (20_000, 20_000, "400000000 pixels"),  # 400 M: Pillow's own DecompressionBombError
        (8_000, 8_000, "64,000,000 pixels, more than max_image_pixels = 50,000,000"),  # ours
    ],
)
def test_an_implausibly_large_image_is_refused_by_id_column_and_parameter(width, height, says):
    bomb = uri(claiming(width, height))
    with pytest.raises(HLEDataError) as raised:
        validate_hle(pd.DataFrame([record("q1"), record("bomb", bomb)]), "x.jsonl")
    message = str(raised.value)
    assert "id 'bomb', column 'image'" in message and says in message
    assert "max_image_pixels" in message
    # Training and answering open images through the same decoder: the same refusal, by id.
    with pytest.raises(HLEDataError, match=r"question 'bomb', column 'image':.*max_image_pixels"):
        prompt_images(bomb, "bomb")
    with pytest.raises(images.ImageProblem):
        load_image(bomb)


def test_the_limit_is_the_parameter_and_an_image_is_never_resized(monkeypatch):
    monkeypatch.delenv(images.ENV_VAR, raising=False)
    assert load_image(uri(png(40, 30))).size == (40, 30)
    images.set_max_pixels(1000)
    try:
        with pytest.raises(images.ImageProblem, match="1,200 pixels, more than max_image_pixels"):
            load_image(uri(png(40, 30)))
        assert images.check_image(uri(png(25, 40))) == (25, 40)  # at the limit: kept whole
    finally:
        images.set_max_pixels(None)
    with pytest.raises(ValueError, match="max_image_pixels must be a positive integer"):
        images.set_max_pixels(0)


def test_bytes_that_are_not_utf8_name_the_file_and_each_line(tmp_path):
    path = tmp_path / "hle.jsonl"
    lines = [json.dumps(record(f"q{i}")).encode() for i in range(4)]
    lines[1] = lines[1].replace(b"What", b"Wh\xe9t")  # Latin-1, not UTF-8
    lines[3] = b"{not json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(HLEDataError) as raised:
        read_export(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: 2 line(s) cannot be read")  # each line listed
    assert "line 2: not UTF-8 (byte 0xe9 at column" in message
    assert "line 4: not valid JSON" in message
    as_json = tmp_path / "hle.json"
    as_json.write_bytes(b'[{"id": "q\xff"}]')
    with pytest.raises(HLEDataError, match=r"hle\.json, line 1: not UTF-8"):
        read_export(as_json)


def test_bad_lines_and_bad_rows_are_listed_together_in_one_message(tmp_path):
    path = tmp_path / "hle.jsonl"
    bomb = json.dumps(record("bomb", uri(claiming(20_000, 20_000)))).encode()
    path.write_bytes(b"\n".join([json.dumps(record("q1")).encode(), b"{\xe9", bomb]))
    with pytest.raises(HLEDataError) as raised:
        validate_hle(read_export(path, collect=True), str(path))
    message = str(raised.value)
    assert message.startswith(f"{path}: 2 problem(s) in the HLE export")
    assert "  - line 2: not UTF-8 (byte 0xe9 at column 2)" in message
    assert "  - id 'bomb', column 'image': more pixels than max_image_pixels" in message


def test_wrong_types_and_a_damaged_parquet_are_named(tmp_path):
    rows = [record("q1"), record(["a", "list"]), record("q3", answer_type=["x"], image=7)]
    with pytest.raises(HLEDataError) as raised:
        validate_hle(pd.DataFrame(rows), "x.jsonl")
    message = str(raised.value)
    assert "column 'id': empty or not a string" in message
    assert "id 'q3', column 'answer_type'" in message and "id 'q3', column 'image'" in message
    damaged = tmp_path / "hle.parquet"
    pd.DataFrame([record()]).to_parquet(damaged)
    damaged.write_bytes(damaged.read_bytes()[:-30])
    with pytest.raises(HLEDataError, match=r"hle\.parquet: not a readable Parquet file"):
        read_export(damaged)
    for payload in (b"[1, 2]", b"5", b'{"data": {"id": 1}}', b"[" * 100_000):
        (tmp_path / "odd.json").write_bytes(payload)
        with pytest.raises(HLEDataError):
            validate_hle(read_export(tmp_path / "odd.json"), "odd.json")


def read_and_validate(path) -> pd.DataFrame | None:
    """A validated frame, or None when the project's named error said why not."""
    try:
        return validate_hle(read_export(path), str(path))
    except HLEDataError as error:
        assert str(error).startswith(str(path)) or str(path) in str(error)
        return None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(lambda r: json.dumps(r).encode(), st.builds(record)),
            st.builds(
                lambda v: json.dumps(record(**v)).encode(),
                st.dictionaries(
                    st.sampled_from(
                        ["id", "question", "answer", "answer_type", "category", "image"]
                    ),
                    st.recursive(
                        st.none()
                        | st.booleans()
                        | st.integers()
                        | st.floats()
                        | st.text(max_size=8),
                        lambda inner: (
                            st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=3), inner, max_size=3)
                        ),
                        max_leaves=5,
                    ),
                    max_size=3,
                ),
            ),
        ),
        max_size=6,
    ),
    suffix=st.sampled_from([".jsonl", ".json"]),
)
def test_any_bytes_give_a_frame_or_the_named_error(tmp_path, lines, suffix):
    path = tmp_path / f"export{suffix}"
    body = b"\n".join(lines) if suffix == ".jsonl" else b"[" + b",".join(lines) + b"]"
    path.write_bytes(body)
    out = read_and_validate(path)
    assert out is None or (len(out) and out["id"].map(lambda v: isinstance(v, str)).all())


@settings(max_examples=80, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda data, at, byte: data[:at] + bytes([byte]) + data[at + 1 :],
            st.sampled_from([png(), png(3, 5), claiming(9000, 9000)]),
            st.integers(0, 60),
            st.integers(0, 255),
        ),
        st.builds(lambda data, n: data[:n], st.just(png(6, 6)), st.integers(0, 80)),
    ),
    header=st.sampled_from(["data:image/png;base64,", "data:image/jpeg;base64,", "data:x,"]),
)
def test_any_image_payload_gives_a_frame_or_the_named_error(payload, header):
    image = header + base64.b64encode(payload).decode()
    try:
        out = validate_hle(pd.DataFrame([record("q1", image)]), "x.jsonl")
    except HLEDataError as error:
        assert "id 'q1', column 'image'" in str(error)
    else:
        assert load_image(out.loc[0, "image"], "q1").mode == "RGB"


def test_a_max_image_pixels_that_is_no_positive_integer_is_refused_before_the_run():
    from hle_reasoning.preflight import image_limit_problems

    assert image_limit_problems("many") == [
        "max_image_pixels must be a positive integer (got 'many') (conf/base/parameters.yml)"
    ]
    assert image_limit_problems(None) == [] and images.max_pixels() == images.DEFAULT_MAX_PIXELS
