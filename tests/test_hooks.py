"""The hooks that parse the parameter blocks once per run and hand them on."""

from __future__ import annotations

from types import SimpleNamespace

from hle_reasoning.config import DistributedConfig, JudgeConfig, parsing
from hle_reasoning.config.study import typed_parameters
from hle_reasoning.hooks import WorkerMachineHook
from hle_reasoning.preflight import PreflightHook

MACHINE_0 = {
    "num_processes": 4,
    "num_machines": 2,
    "machine_rank": 0,
    "main_process_ip": "10.0.0.1",
    "main_process_port": 29500,
}


def test_each_params_name_gets_its_block_or_the_field_it_names():
    judge = JudgeConfig(kind="rules")
    blocks = {"evaluation": SimpleNamespace(judge=judge, report=SimpleNamespace(labels={"a": 1}))}
    names = [
        "params:evaluation",
        "params:evaluation.judge",
        "params:evaluation.judge.rules.rel_tol",
        "params:evaluation.report.labels.a",
        "params:evaluation.report.labels.x.y",  # no such key: left to the raw value
        "params:hle_source",  # not a block
        "focus_test",  # a dataset
    ]
    typed = typed_parameters(blocks, names)
    assert typed == {
        "params:evaluation": blocks["evaluation"],
        "params:evaluation.judge": judge,
        "params:evaluation.judge.rules.rel_tol": judge.rules.rel_tol,
        "params:evaluation.report.labels.a": 1,
    }
    assert typed_parameters({}, names) == {}


def test_machine_0_closes_the_worker_machines_with_the_block_the_preflight_parsed(monkeypatch):
    parses = []
    parse_block = parsing._parse

    def counting(cls, data, path, problems):
        parses.append(path)
        return parse_block(cls, data, path, problems)

    monkeypatch.setattr(parsing, "_parse", counting)
    preflight = PreflightHook()
    machines = WorkerMachineHook(preflight)
    machines.after_context_created(SimpleNamespace(params={"distributed": MACHINE_0}))
    assert parses == []  # machine 0 leaves the parse to the preflight
    parsed = DistributedConfig.from_params(MACHINE_0)
    preflight._blocks = {"distributed": parsed}  # what its before_pipeline_run keeps
    assert machines._main_machine_config() is parsed
    # A run that reads no distributed block (data_processing alone): parsed here, once.
    preflight._blocks = {}
    parses.clear()
    config = machines._main_machine_config()
    assert config == parsed and parses == ["distributed"]
    # One machine: nothing to close.
    single = WorkerMachineHook(preflight)
    single.after_context_created(SimpleNamespace(params={"distributed": {"num_processes": 2}}))
    assert single._main_machine_config() is None


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
