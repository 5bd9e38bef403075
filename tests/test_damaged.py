"""A dataset that no longer loads is named with the pipeline and command that rewrite it
(``hle_reasoning.damaged``), instead of Kedro's traceback."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, DatasetError
from kedro_datasets.pandas import ParquetDataset

from hle_reasoning.damaged import DamagedDatasetHook, damaged_dataset_message, dataset_path


class _Node:
    name = "train_grpo_node"


def _load_error(catalog: DataCatalog, name: str) -> DatasetError:
    with pytest.raises(DatasetError) as raised:
        catalog.load(name)
    return raised.value


def test_a_dataset_that_no_longer_loads_is_named_with_the_pipeline_that_rewrites_it(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("focus_train", "judged"):
        (tmp_path / "data" / f"{name}.parquet").write_bytes(b"PAR1 cut short")
    catalog = DataCatalog(
        {
            name: ParquetDataset(filepath=str(tmp_path / "data" / f"{name}.parquet"))
            for name in ("focus_train", "judged")
        }
    )
    hook = DamagedDatasetHook()
    hook.before_pipeline_run({}, None, catalog)
    assert damaged_dataset_message(RuntimeError("no load under way")) is None

    hook.before_dataset_loaded("focus_train", _Node())
    message = damaged_dataset_message(_load_error(catalog, "focus_train"))
    assert message is not None
    assert message.startswith(
        "data/focus_train.parquet (dataset 'focus_train'), read by node 'train_grpo_node', "
        "was written by this project's data_processing pipeline but no longer loads ("
    )
    assert "Rewrite it with `kedro run --pipelines data_processing`" in message
    assert damaged_dataset_message(ValueError("not a dataset's")) is None

    hook.before_dataset_loaded("judged", _Node())  # an input no pipeline writes
    message = damaged_dataset_message(_load_error(catalog, "judged"))
    assert "It is an input of this run, not written by the study's pipelines" in message
    hook.after_dataset_loaded("judged", None, _Node())
    assert damaged_dataset_message(_load_error(catalog, "judged")) is None  # loaded: not its

    assert dataset_path(catalog, "focus_train") == tmp_path.joinpath(
        "data/focus_train.parquet"
    ).relative_to(tmp_path)
    assert dataset_path(catalog, "absent") is None
