import sqlite3

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from hle_reasoning.config import DataProcessingConfig, ModelConfig
from hle_reasoning.modeling.models import load_tokenizer
from hle_reasoning.pipelines.data_processing import create_pipeline, nodes
from tests.conftest import put_blocks
from tests.kedro_cli import kedro_run_in_process
from tests.pipelines.exports import assert_a_broken_export_changes_nothing


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so a test can read intermediate outputs."""

    def _release(self) -> None:
        pass


def run_in_memory(questions: pd.DataFrame) -> dict:
    pipe = create_pipeline()
    catalog = DataCatalog({name: KeptDataset() for name in pipe.all_outputs()})
    catalog["hle_questions"] = questions
    catalog["tokenizer"] = load_tokenizer("tiny")
    put_blocks(catalog, pipe, data_processing=DataProcessingConfig(), model=ModelConfig())
    catalog["params:hle_source"] = "test"
    SequentialRunner().run(pipe, catalog)
    return {name: catalog.load(name) for name in pipe.all_outputs()}


def test_pipeline_on_the_bundled_sample(sample_questions):
    out = run_in_memory(sample_questions)
    stats = out["hle_statistics"].set_index("category")
    assert stats.loc["All", "questions"] == len(sample_questions) == 192
    assert stats.loc["Math", "questions"] == 100
    assert set(out["focus_train"]["category"]) == {"Math"}
    assert len(out["focus_test"]) == 73 and len(out["focus_train"]) == 27
    # Image questions reach both sides of the focus split (training needs some).
    assert (out["focus_train"]["image"] != "").sum() >= 2
    assert (out["focus_test"]["image"] != "").sum() >= 2
    assert "Table 4" in out["hle_statistics_report"]
    metrics = out["data_processing_metrics"]
    assert metrics["math.questions"]["value"] == 100.0
    assert metrics["math.test_size"]["value"] == 73.0
    assert "split.leaks" in metrics


def test_focus_category_missing_is_a_clear_error(sample_questions):
    with pytest.raises(ValueError, match=r"focus_categories names \['Astrology'\]"):
        nodes.select_focus(sample_questions, sample_questions.iloc[0:0], ["Astrology"])


def test_a_focus_without_training_questions_is_refused_by_name(sample_questions):
    from hle_reasoning.config.data_processing import FocusSplitError
    from hle_reasoning.hle.data.sampling import stratified_split

    train, test, _ = stratified_split(sample_questions)
    # The sample's 12 Humanities questions all go to the test side.
    with pytest.raises(FocusSplitError, match=r"leaves 0 training question") as refused:
        nodes.select_focus(train, test, ["Humanities/Social Science"])
    assert "focus_train and focus_test were not written" in str(refused.value)


def test_pipeline_describes_the_real_hle_subset(real_questions):
    out = run_in_memory(real_questions)
    stats = out["hle_statistics"].set_index("category")
    expected = {
        "Math": 255,
        "Computer Science/AI": 69,
        "Biology/Medicine": 66,
        "Physics": 60,
        "Other": 58,
        "Humanities/Social Science": 51,
        "Engineering": 21,
        "Chemistry": 15,
    }
    for category, count in expected.items():
        assert stats.loc[category, "questions"] == count
    assert stats.loc["All", "questions"] == 595
    assert stats.loc["All", "image_pct"] == pytest.approx(100 * 53 / 595)
    assert stats.loc["All", "exact_match_pct"] == pytest.approx(100 * 434 / 595)
    math = real_questions[real_questions["category"] == "Math"]
    assert stats.loc["Math", "image_pct"] == pytest.approx(100 * (math["image"] != "").mean())
    assert stats.loc["Math", "tokens_max"] > stats.loc["Math", "tokens_min"] > 0
    assert len(out["focus_test"]) == 132  # round(270.6 / (1 + 269.6 / 255)) = 132


@pytest.mark.slow
def test_kedro_run_on_real_hle_and_bad_input_leaves_results_intact(project_copy, real_hle_path):
    result = kedro_run_in_process(
        project_copy, "--pipelines", "data_processing", "--params", f"hle_source={real_hle_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reporting = project_copy / "data" / "08_reporting"
    stats = pd.read_csv(reporting / "hle_statistics.csv").set_index("category")
    assert stats.loc["All", "questions"] == 595
    assert (reporting / "figure_1_questions_per_category.png").stat().st_size > 10_000
    assert str(real_hle_path) in (reporting / "hle_statistics.md").read_text()

    # MLflow recorded the flattened parameters and the statistics.
    with sqlite3.connect(project_copy / "mlflow.db") as db:
        params = dict(db.execute("select key, value from params").fetchall())
        metrics = dict(db.execute("select key, value from metrics").fetchall())
    assert params["data_processing.split.confidence_level"] == "0.9"
    assert params["hle_source"] == str(real_hle_path)
    assert metrics["data_processing.math.questions"] == 255.0

    # A broken export: the run fails naming the file, row and column, and nothing changes.
    assert_a_broken_export_changes_nothing(project_copy, real_hle_path)
