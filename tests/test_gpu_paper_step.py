"""benchmarks/gpu_paper_step.py rehearsed on CPU, as it will run on a bare GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

# Makes kedro and mlflow absent, as on the GPU machine: find_spec() answers None, import fails.
ABSENT = "import sys\nfor name in ('kedro', 'mlflow'):\n    sys.modules[name] = None\n"


@pytest.mark.slow
def test_cpu_rehearsal_runs_without_kedro_or_mlflow(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(ABSENT)
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "benchmarks" / "gpu_paper_step.py"),
            "--cpu-rehearsal",
            "--steps",
            "2",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "imports: no kedro, no mlflow" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["imports_kedro_or_mlflow"] == []
    assert figures["setup"].startswith("CPU rehearsal")
    assert len(figures["steps"]) == 2
    assert all(s["completion_tokens"] > 0 and s["generation_s"] > 0 for s in figures["steps"])
    assert sum(s["image_questions"] for s in figures["steps"]) > 0  # image questions were trained
    assert figures["eq6"]["bits"] == 4 and figures["eq6"]["training_overhead_gb"] == 1.5
    assert figures["completions_per_step"] == 4  # the proposal: 2 prompts x 2 completions
    assert figures["peak_memory"]["peak_rss_gb"] > 0
    for line in (
        "quantized model size",
        "eq. (6) estimate",
        "time per step",
        "completion tokens / s",
    ):
        assert line in result.stdout
