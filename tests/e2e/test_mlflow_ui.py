"""The MLflow UI lists the study's runs; baseline and fine-tuned metrics sit side by side."""

import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.servers import (
    BIN,
    chromium,
    chromium_render,
    free_port,
    get_json,
    group_alive,
    port_open,
    server,
)

pytestmark = pytest.mark.slow


def test_mlflow_ui_compares_baseline_and_finetuned(finished_study, tmp_path):
    port = free_port()
    # The README's command.
    command = [
        str(BIN / "mlflow"),
        "ui",
        "--backend-store-uri",
        "sqlite:///mlflow.db",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with server(command, finished_study.path, port, "/health") as proc:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        experiment = get_json(f"{base}/experiments/get-by-name?experiment_name=hle_reasoning")[
            "experiment"
        ]
        # Tagged as a classic ML experiment: the UI lists it under "Machine learning".
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags.get("mlflow.experimentKind") == "custom_model_development"
        found = get_json(
            f"{base}/runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
        )
        by_variant = {}
        for run in found["runs"]:
            tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            if "variant" in tags:
                by_variant[tags["variant"]] = run
        assert set(by_variant) == {"baseline", "finetuned"}
        metric_names = [
            {m["key"] for m in by_variant[v]["data"]["metrics"]} for v in ("baseline", "finetuned")
        ]
        # The same metric names on both runs: the UI's compare view lines them up.
        assert metric_names[0] == metric_names[1]
        assert {
            "accuracy",
            "accuracy_ci",
            "calibration_error",
            "calibration_error_all_bins",
        } <= metric_names[0]

        browser = chromium() is not None
        if browser:
            shots = Path(os.environ.get("HLE_SCREENSHOT_DIR", tmp_path))
            shots.mkdir(parents=True, exist_ok=True)
            # The address the study's summary prints opens the runs table, not the GenAI pages
            # (MLflow 3.17's default: "Traces", "No data available", a "Detect Issues" pop-up).
            printed = re.search(r"\(then (http://127\.0\.0\.1:5000/\S+)\)", finished_study.output)
            assert printed, "the summary does not print the MLflow UI's address"
            landing = printed[1].replace(":5000", f":{port}")
            assert f"/experiments/{experiment['experiment_id']}" in landing
            page = chromium_render(
                landing, tmp_path / "landing-profile", shots / "mlflow_runs.png", budget_ms=25000
            )
            assert "matching runs" in page and "__default__" in page
            assert "Detect Issues" not in page and "No data available" not in page
            ids = json.dumps(
                [
                    by_variant["baseline"]["info"]["run_id"],
                    by_variant["finetuned"]["info"]["run_id"],
                ]
            )
            experiments = json.dumps([experiment["experiment_id"]])
            url = f"http://127.0.0.1:{port}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(experiments)}"
            dom = chromium_render(
                url,
                tmp_path / "profile",
                shots / "mlflow_compare_runs.png",
                budget_ms=25000,
                window="1600,2600",
            )
            assert "evaluation.baseline" in dom and "evaluation.finetuned" in dom
            assert "calibration_error" in dom
        pgid = proc.pid
    assert not group_alive(pgid), "the MLflow UI left a process running"
    assert not port_open(port)
    if not browser:  # the API checks above passed; say so rather than pass silently
        pytest.skip(
            "MLflow UI browser check (compare view, screenshot) skipped: Debian's chromium is "
            "not installed (apt-get install chromium); the REST API checks passed"
        )
