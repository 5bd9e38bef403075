"""A broken HLE export given to `kedro run`: the check shared by the bundled-sample and the
real-HLE tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.kedro_cli import kedro_run_in_process


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def assert_a_broken_export_changes_nothing(project: Path, source: Path) -> None:
    """``source`` with one row's ``answer_type`` made invalid fails data_processing, naming the
    file, the row's id and the column; the earlier results and the file stay as they were."""
    reporting, primary = project / "data" / "08_reporting", project / "data" / "03_primary"
    before = digests(reporting), digests(primary)
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[3]["answer_type"] = "essay"
    bad = project / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bad_bytes = bad.read_bytes()
    failed = kedro_run_in_process(
        project, "--pipelines", "data_processing", "--params", f"hle_source={bad}"
    )
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "bad.jsonl" in output and rows[3]["id"] in output and "answer_type" in output
    # One message, refused before any node: no traceback of the dataset error that wraps it.
    assert "Error: HLEDataError: " in output and "Traceback" not in output and "╭" not in output
    assert len(output.splitlines()) < 40, output[-3000:]
    assert (digests(reporting), digests(primary)) == before
    assert bad.read_bytes() == bad_bytes
