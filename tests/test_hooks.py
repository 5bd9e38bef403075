"""The hook that closes the worker machines takes the block Kedro validated for the run."""

from __future__ import annotations

from types import SimpleNamespace

from kedro.io import DataCatalog, MemoryDataset

from hle_reasoning.config import DistributedConfig, parsing
from hle_reasoning.worker_machine import WorkerMachineHook

MACHINE_0 = {
    "num_processes": 4,
    "num_machines": 2,
    "machine_rank": 0,
    "main_process_ip": "10.0.0.1",
    "main_process_port": 29500,
}


def context(distributed: dict) -> SimpleNamespace:
    """A context as the hook reads it: the parameters as written, from the config loader."""
    return SimpleNamespace(config_loader={"parameters": {"distributed": distributed}})


def test_machine_0_closes_the_worker_machines_with_the_block_kedro_validated(monkeypatch):
    parses = []
    parse_block = parsing._parse

    def counting(cls, data, path, problems):
        parses.append(path)
        return parse_block(cls, data, path, problems)

    monkeypatch.setattr(parsing, "_parse", counting)
    machines = WorkerMachineHook()
    machines.after_context_created(context(MACHINE_0))
    assert parses == []  # machine 0 leaves the block to Kedro
    validated = DistributedConfig.model_validate(MACHINE_0)  # what Kedro puts in the catalog
    catalog = DataCatalog({"params:distributed": MemoryDataset(validated)})
    assert machines._main_machine_config(catalog) == validated and parses == []  # not re-parsed
    # A run that reads no distributed block (data_processing alone): validated here, once.
    parses.clear()
    config = machines._main_machine_config(DataCatalog())
    assert config == validated and parses == ["distributed"]
    # One machine: nothing to close.
    single = WorkerMachineHook()
    single.after_context_created(context({"num_processes": 2}))
    assert single._main_machine_config(catalog) is None


def test_the_summary_lists_each_file_of_a_dataset_with_one_file_per_variant(tmp_path):
    from kedro.io import DataCatalog
    from kedro_datasets.partitions import PartitionedDataset

    from hle_reasoning.hooks import dataset_paths

    folder = tmp_path / "08_reporting"
    diagrams = PartitionedDataset(
        path=str(folder), dataset="text.TextDataset", filename_suffix="_diagram.txt"
    )
    catalog = DataCatalog({"diagrams": diagrams})
    assert dataset_paths(catalog, "diagrams") == []  # nothing written yet
    diagrams.save({"baseline": "a", "gpt_4o": "b"})
    assert sorted(p.name for p in dataset_paths(catalog, "diagrams")) == [
        "baseline_diagram.txt",
        "gpt_4o_diagram.txt",
    ]
