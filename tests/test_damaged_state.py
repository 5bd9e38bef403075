"""Damaged state the project reads but did not write in this run: answer stores, checkpoint
markers, packaged-model markers, model folders. Each ends in a named error or is skipped with a
warning, never in a traceback."""

from __future__ import annotations

import json

import pytest
import yaml

from hle_reasoning.config.training import TrainingConfigError
from hle_reasoning.datasets.evaluation import JSONLinesStore
from hle_reasoning.modeling import packaged
from hle_reasoning.modeling.checkpoints import FINGERPRINT_FILE, resolve_resume
from hle_reasoning.modeling.families import family_of
from hle_reasoning.modeling.models import ModelAccessError, loading_folder
from tests.conftest import PROJECT_ROOT


def test_a_store_line_that_is_not_utf8_or_not_a_record_is_skipped(tmp_path):
    path = tmp_path / "responses.jsonl"
    good = json.dumps({"id": "q1", "response": "Answer: 4"}).encode()
    path.write_bytes(good + b'\n\xff\xfe{cut\n5\n[1, 2]\n"text"\n' + good.replace(b"q1", b"q2"))
    frame = JSONLinesStore(filepath=str(path), columns=["id", "response"]).load()
    assert frame["id"].tolist() == ["q1", "q2"]


def test_a_damaged_checkpoint_marker_stops_instead_of_removing_checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / FINGERPRINT_FILE).write_bytes(b"\xff{")
    with pytest.raises(TrainingConfigError, match=r"run_fingerprint\.json is damaged"):
        resolve_resume(folder, "abc", "auto")
    assert (folder / "checkpoint-2").is_dir()  # kept: the user decides
    (folder / FINGERPRINT_FILE).write_text("[1]")
    with pytest.raises(TrainingConfigError, match="training.checkpoints.resume=false"):
        resolve_resume(folder, "abc", "auto")
    assert resolve_resume(folder, "abc", False) is None  # the way out the message names
    assert not (folder / "checkpoint-2").exists()


def test_a_damaged_packaged_marker_means_convert_again(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / packaged.SOURCE_FILE).write_bytes(b"\xff\xfe")
    assert packaged.is_converted(tmp_path, {"gguf_file": "x", "bytes": 1}) is False


def test_a_damaged_model_folder_is_named_with_the_command_that_rewrites_it(tmp_path):
    folder = tmp_path / "data" / "06_models" / "base_model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["Mllama')
    with pytest.raises(ModelAccessError) as raised:
        family_of(folder)
    assert f"{folder / 'config.json'} is damaged" in str(raised.value)
    assert "`kedro run --pipelines training`" in str(raised.value)

    elsewhere = tmp_path / "my_model"
    elsewhere.mkdir()
    with pytest.raises(ModelAccessError, match=r"the LoRA adapter in .*my_model does not load"):
        with loading_folder(elsewhere, "LoRA adapter"):
            raise OSError("Error while deserializing header: incomplete metadata")
    with pytest.raises(OSError):  # a hub id is not a folder: the library's own error stays
        with loading_folder("owner/model", "model"):
            raise OSError("404")


def test_a_judged_file_of_the_wrong_shape_is_one_message_of_the_command():
    from hle_reasoning import launch
    from hle_reasoning.cli import _project_errors
    from hle_reasoning.config import EvaluationConfig
    from hle_reasoning.hle.judge.agreement import JudgedFileError
    from hle_reasoning.pipelines.judge_agreement.nodes import measure_judge_agreement

    evaluation = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())[
        "evaluation"
    ]
    with pytest.raises(JudgedFileError) as raised:
        measure_judge_agreement([1], None, EvaluationConfig.model_validate(evaluation))
    assert "the judged file in --params judged must be a JSON object" in str(raised.value)
    wrapped = RuntimeError("node failed")
    wrapped.__cause__ = raised.value
    assert launch.project_error(wrapped, _project_errors()) is raised.value
