"""Bad input stops `kedro run` and leaves earlier results intact, on the bundled sample
(the real-HLE version of this test needs ../shared)."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import SAMPLE
from tests.kedro_cli import kedro_run

pytestmark = pytest.mark.slow


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_broken_export_is_named_and_changes_nothing(project_copy):
    first = kedro_run(project_copy, "--pipelines", "data_processing")
    assert first.returncode == 0, first.stderr[-3000:]
    reporting = project_copy / "data" / "08_reporting"
    primary = project_copy / "data" / "03_primary"
    before = digests(reporting), digests(primary)

    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rows[3]["answer_type"] = "essay"
    bad = project_copy / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bad_bytes = bad.read_bytes()
    failed = kedro_run(
        project_copy, "--pipelines", "data_processing", "--params", f"hle_source={bad}"
    )
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "bad.jsonl" in output and rows[3]["id"] in output and "answer_type" in output
    assert (digests(reporting), digests(primary)) == before
    assert bad.read_bytes() == bad_bytes
