"""The project's datasets write whole or not at all, and refuse what they cannot do."""

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from hle_reasoning.datasets import (
    BaseModelDataset,
    CSVDataset,
    HLEDataset,
    ParquetDataset,
    TextDataset,
)
from hle_reasoning.datasets.atomic import write_directory_atomically


class Unwritable:
    """A frame-like object whose serialisation fails halfway (after the file was opened)."""

    def to_csv(self, *args, **kwargs):
        raise RuntimeError("serialisation failed")


def test_atomic_csv_keeps_the_previous_file_when_a_save_fails(tmp_path):
    path = tmp_path / "reporting" / "table.csv"
    dataset = CSVDataset(filepath=str(path))
    dataset.save(pd.DataFrame({"a": [1, 2]}))
    before = path.read_bytes()
    with pytest.raises(DatasetError):
        dataset.save(Unwritable())
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]  # no temporary left behind
    pd.testing.assert_frame_equal(dataset.load(), pd.DataFrame({"a": [1, 2]}))


def test_atomic_text_replaces_whole_files(tmp_path):
    dataset = TextDataset(filepath=str(tmp_path / "report.md"))
    dataset.save("first")
    dataset.save("second")
    assert dataset.load() == "second"
    # A text that cannot be encoded fails after the file was opened for writing: a plain save
    # would leave it truncated; the atomic one keeps the previous report.
    with pytest.raises(DatasetError):
        dataset.save("third, with a lone surrogate \ud800")
    assert dataset.load() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary left behind


def test_directory_write_failure_keeps_the_previous_directory(tmp_path):
    target = tmp_path / "adapter"
    write_directory_atomically(target, lambda d: (d / "weights.bin").write_text("v1"))

    def broken(folder):
        (folder / "weights.bin").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_directory_atomically(target, broken)
    assert (target / "weights.bin").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_base_model_dataset_records_references_and_refuses_other_objects(tmp_path):
    dataset = BaseModelDataset(path=str(tmp_path / "base_model"))
    with pytest.raises(DatasetError, match="run the training pipeline first"):
        dataset.load()
    dataset.save("meta-llama/Llama-3.2-11B-Vision-Instruct")
    assert dataset.load() == "meta-llama/Llama-3.2-11B-Vision-Instruct"
    with pytest.raises(DatasetError, match="saves a BuiltModel or a name_or_path string"):
        dataset.save(42)
    assert dataset.load() == "meta-llama/Llama-3.2-11B-Vision-Instruct"


def test_hle_dataset_is_read_only_and_names_the_source(tmp_path):
    with pytest.raises(DatasetError, match="read-only"):
        HLEDataset(source="data/01_raw/hle_sample.jsonl").save(pd.DataFrame())
    with pytest.raises(Exception, match="missing.jsonl: no such file"):
        HLEDataset(source=str(tmp_path / "missing.jsonl")).load()


@pytest.mark.parametrize("cls", [CSVDataset, ParquetDataset])
def test_atomic_saves_work_with_kedro_versioning(tmp_path, cls):
    from kedro.io import Version

    path = tmp_path / "reporting" / "table.file"
    frames = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})]
    versions = []
    stamps = ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z")
    for frame, version in zip(frames, stamps, strict=True):
        dataset = cls(filepath=str(path), version=Version(None, version))
        dataset.save(frame)
        versions.append(version)
    # Each save is a whole file in its version's folder, and nothing temporary is left.
    written = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert written == [f"{v}/table.file" for v in versions]
    latest = cls(filepath=str(path), version=Version(None, None)).load()
    pd.testing.assert_frame_equal(latest.reset_index(drop=True), frames[1])
    first = cls(filepath=str(path), version=Version(versions[0], None)).load()
    pd.testing.assert_frame_equal(first.reset_index(drop=True), frames[0])


def test_a_failed_versioned_save_leaves_no_version_behind(tmp_path):
    from kedro.io import Version

    path = tmp_path / "table.csv"
    dataset = CSVDataset(filepath=str(path), version=Version(None, "2026-01-01T00.00.00.000Z"))
    with pytest.raises(DatasetError):
        dataset.save(Unwritable())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_store_takes_its_columns_from_the_code_by_name(tmp_path):
    from hle_reasoning.datasets import JSONLinesStore
    from hle_reasoning.hle.judge.table import VERDICT_COLUMNS

    store = JSONLinesStore(
        filepath=str(tmp_path / "verdicts.jsonl"),
        columns="hle_reasoning.hle.judge.table.VERDICT_COLUMNS",
    )
    assert list(store.load().columns) == list(VERDICT_COLUMNS)
    with pytest.raises(DatasetError, match="names no column list"):
        JSONLinesStore(filepath=str(tmp_path / "x.jsonl"), columns="hle_reasoning.hle.NOPE")


def test_a_figure_saved_as_a_report_and_logged_to_mlflow_is_rendered_once(
    tmp_path, monkeypatch, mlflow_store
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from hle_reasoning import tracking
    from hle_reasoning.datasets import MatplotlibDataset
    from hle_reasoning.hle.scoring.report import reliability_diagram

    renders = []
    savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda self, *a, **k: renders.append(1) or savefig(self, *a, **k)
    )
    figure = reliability_diagram(
        [90.0, 10.0, 55.0, 100.0] * 30, [True, False, True, False] * 30, title="baseline"
    )
    report = tmp_path / "reliability_diagram.png"
    mlflow = mlflow_store
    try:
        with mlflow.start_run() as run:
            MatplotlibDataset(filepath=str(report), save_args=tracking.FIGURE_SAVE_ARGS).save(
                figure
            )
            tracking.log_artifact("reliability_diagram.png", figure, "evaluation")
        logged = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="evaluation/reliability_diagram.png"
        )
    finally:
        plt.close("all")
    assert renders == [1]
    image = report.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 5_000
    assert open(logged, "rb").read() == image
    # Other savefig arguments are another rendering.
    tracking_args = {**tracking.FIGURE_SAVE_ARGS, "dpi": 60}
    MatplotlibDataset(filepath=str(tmp_path / "small.png"), save_args=tracking_args).save(figure)
    assert renders == [1, 1]
    assert (tmp_path / "small.png").read_bytes() != image


def _wanted(ids, key, answer="new"):
    from hle_reasoning.datasets.stores import Wanted

    made = []

    def make(todo, kept, shards):
        made.extend(todo["id"])
        for qid in reversed(list(todo["id"])):  # answers arrive in any order
            yield pd.DataFrame({"id": [qid], "key": [key], "response": [answer]})

    return Wanted(rows=pd.DataFrame({"id": ids, "key": key}), make=make), made


def test_a_variant_store_keeps_one_file_per_variant_reuses_by_key_and_keeps_question_order(
    tmp_path,
):
    from hle_reasoning.datasets import JSONLinesStore, VariantStore

    store = VariantStore(
        filepath=str(tmp_path / "{variant}" / "r.jsonl"), key_column="key", columns=["id", "key"]
    )
    assert store.load().columns.tolist() == ["variant", "id", "key"] and store.load().empty
    first, made = _wanted(["q1", "q2", "q3"], "a")
    store.save({"baseline": first, "GPT-4o": _wanted(["q1"], "a")[0]})
    assert made == ["q1", "q2", "q3"]
    gpt = JSONLinesStore(filepath=str(tmp_path / "gpt_4o" / "r.jsonl")).load()
    assert gpt.to_dict("records") == [
        {"variant": "GPT-4o", "id": "q1", "key": "a", "response": "new"}
    ]
    baseline = JSONLinesStore(filepath=str(tmp_path / "baseline" / "r.jsonl")).load()
    assert baseline["id"].tolist() == ["q1", "q2", "q3"]  # the wanted order, not the arrival's
    # A rerun: q1 and q2 stored under the wanted key are reused, q4 is new; q3 (not wanted) is
    # dropped; another key for q2 would make it stale.
    again, made = _wanted(["q4", "q2", "q1"], "a")
    store.save({"baseline": again})
    assert made == ["q4"]
    assert store.load().groupby("variant")["id"].apply(list).to_dict() == {
        "GPT-4o": ["q1"],
        "baseline": ["q4", "q2", "q1"],
    }
    stale, made = _wanted(["q1"], "b")
    store.save({"baseline": stale})
    assert made == ["q1"]
    keys = store.load().set_index("variant")["key"].to_dict()
    assert keys == {"baseline": "b", "GPT-4o": "a"}  # GPT-4o's untouched


def test_a_variant_store_says_what_it_needs(tmp_path):
    from hle_reasoning.datasets import VariantStore

    with pytest.raises(DatasetError, match=r"must hold '\{variant\}' once"):
        VariantStore(filepath=str(tmp_path / "r.jsonl"), key_column="key")
    store = VariantStore(filepath=str(tmp_path / "{variant}.jsonl"), key_column="key")
    with pytest.raises(DatasetError, match=r"saves \{variant: Wanted\}"):
        store.save(pd.DataFrame({"id": ["q1"]}))


class _Saves:
    """Stands for a model or a processor: ``save_pretrained`` writes one file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save_pretrained(self, folder) -> None:
        (folder / self.name).write_text(self.name)


def test_a_copied_project_loads_its_own_copy_of_the_base_model(tmp_path):
    import json
    import shutil

    from hle_reasoning.modeling.models import BuiltModel

    project = tmp_path / "study"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "study"\n')
    models = project / "data" / "06_models"
    built = BuiltModel(_Saves("weights"), _Saves("processor"), built_from="tiny")
    BaseModelDataset(path=str(models / "base_model")).save(built)
    (models / "packaged" / "m").mkdir(parents=True)
    BaseModelDataset(path=str(models / "reference")).save(str(models / "packaged" / "m"))
    ref = json.loads((models / "base_model" / BaseModelDataset.REF_FILE).read_text())
    assert ref["in_project"] == "data/06_models/base_model"

    copy = Path(shutil.copytree(project, tmp_path / "copy"))
    shutil.rmtree(project)  # the original is gone: the copy must not need it
    copied = copy.resolve() / "data" / "06_models"
    assert BaseModelDataset(path=str(copied / "base_model")).load() == str(copied / "base_model")
    assert BaseModelDataset(path=str(copied / "reference")).load() == str(copied / "packaged/m")
    # A file written before (an absolute name_or_path alone) is read as written; a hub id too.
    (copied / "older").mkdir()
    (copied / "older" / BaseModelDataset.REF_FILE).write_text(
        json.dumps({"name_or_path": "/elsewhere/base_model", "built_from": "tiny"})
    )
    assert BaseModelDataset(path=str(copied / "older")).load() == "/elsewhere/base_model"
    hub = BaseModelDataset(path=str(copied / "hub"))
    hub.save("meta-llama/Llama-3.2-11B-Vision-Instruct")
    assert hub.load() == "meta-llama/Llama-3.2-11B-Vision-Instruct"
    assert "in_project" not in json.loads((copied / "hub" / BaseModelDataset.REF_FILE).read_text())
    # Outside any Kedro project: the absolute path, as before.
    loose = BaseModelDataset(path=str(tmp_path / "loose"))
    loose.save(built)
    assert loose.load() == str(tmp_path / "loose")
