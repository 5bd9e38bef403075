"""Start-up and exit of a run: the project's modules import no heavy library until a node needs
it, and a run that skips the final garbage collection still leaves every output and its MLflow
run complete."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
from PIL import Image

# What a node imports when it runs; importing the pipelines or the hooks must not.
HEAVY = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "sentence_transformers",
    "sympy",
    "math_verify",
    "scipy",
    "mlflow",
)

IMPORT_PROJECT = f"""
import json, sys
from kedro.framework.project import configure_project
configure_project("hle_reasoning")
import hle_reasoning.settings, hle_reasoning.hooks, hle_reasoning.preflight, hle_reasoning.cli
from hle_reasoning.pipeline_registry import register_pipelines
pipelines = register_pipelines()
print(json.dumps({{
    "pipelines": sorted(pipelines),
    "heavy": sorted(name for name in {HEAVY!r} if name in sys.modules),
}}))
"""


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_pipelines_hooks_and_settings_import_no_heavy_library():
    done = python(IMPORT_PROJECT)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"data_processing", "training", "evaluation", "__default__"} <= set(found["pipelines"])
    assert found["heavy"] == []


# The project's run command, as `hle-reasoning` runs it, with an exit handler registered first
# (so it runs last) that reports how many objects the final collection will leave alone.
RUN_AND_REPORT_FREEZE = """
import atexit, gc, sys
atexit.register(lambda: print(f"frozen at exit: {gc.get_freeze_count()}", flush=True))
from hle_reasoning.__main__ import main
sys.argv = ["hle-reasoning", "--pipelines", "data_processing"]
main()
"""


def test_run_skips_the_final_collection_and_loses_nothing(project_copy):
    done = python(RUN_AND_REPORT_FREEZE, cwd=project_copy)
    assert done.returncode == 0, done.stderr[-3000:]
    frozen = int(done.stdout.rsplit("frozen at exit: ", 1)[1].split()[0])
    assert frozen > 10_000  # the whole heap went to the permanent generation
    assert "hle-reasoning: data_processing finished in" in done.stdout

    # Every output whole: the split, the reports and the figure.
    data = project_copy / "data"
    train = pd.read_parquet(data / "05_model_input" / "focus_train.parquet")
    test = pd.read_parquet(data / "05_model_input" / "focus_test.parquet")
    assert len(train) > 0 and len(test) > 0 and not set(train["id"]) & set(test["id"])
    reporting = data / "08_reporting"
    sizes = pd.read_csv(reporting / "split_sizes.csv")
    assert len(sizes) > 0
    assert (reporting / "hle_statistics.md").read_text().strip()
    with Image.open(reporting / "figure_1_questions_per_category.png") as figure:
        figure.load()

    # The MLflow run closed FINISHED, with its metrics and the same report files as artifacts.
    with sqlite3.connect(project_copy / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status, artifact_uri from runs").fetchall()
        assert len(runs) == 1
        run_id, status, artifact_uri = runs[0]
        metrics = db.execute("select count(*) from metrics where run_uuid = ?", (run_id,))
        assert metrics.fetchone()[0] > 0
        params = dict(db.execute("select key, value from params where run_uuid = ?", (run_id,)))
        assert params["data_processing.split.seed"] == "42"
    assert status == "FINISHED"
    artifacts = Path(unquote(urlparse(artifact_uri).path))
    if not artifacts.is_absolute():
        artifacts = project_copy / artifacts
    for name in ("split_sizes.csv", "hle_statistics.md", "figure_1_questions_per_category.png"):
        logged = list(artifacts.rglob(name))
        assert len(logged) == 1, name
        assert logged[0].read_bytes() == (reporting / name).read_bytes()
