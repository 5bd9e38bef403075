"""Shared fixtures: the bundled sample, the real HLE anchors (when ``$HLE_SHARED_DIR`` holds
them), a project copy."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hle_reasoning.hle.data.schema import read_export, validate_hle

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "data" / "01_raw" / "hle_sample.jsonl"
SHARED = Path(os.environ.get("HLE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
ANCHORS = SHARED / "anchors" / "hle"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if "MUTANT_UNDER_TEST" in os.environ:
    # mutmut (scripts/mutation.sh) runs the same tests several times in one process, so a
    # property test that is a method is called from several instances of its class, which
    # hypothesis refuses (HealthCheck.differing_executors) before any mutant is tried.
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "mutmut", suppress_health_check=[HealthCheck.differing_executors], deadline=None
    )
    settings.load_profile("mutmut")


@pytest.fixture(scope="session")
def sample_questions() -> pd.DataFrame:
    return validate_hle(read_export(SAMPLE), str(SAMPLE))


def anchor(name: str) -> Path:
    """A file of the real HLE anchors in ``$HLE_SHARED_DIR``; skips the test when it is absent."""
    path = ANCHORS / name
    if not path.exists():
        pytest.skip(f"real HLE anchor {path} not available (no real HLE data in $HLE_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def real_hle_path() -> Path:
    return anchor("hle_verified_subset.jsonl")


@pytest.fixture(scope="session")
def real_questions(real_hle_path: Path) -> pd.DataFrame:
    return validate_hle(read_export(real_hle_path), str(real_hle_path))


def make_project_copy(dest: Path) -> Path:
    """A throw-away copy of the project (conf, bundled data, pyproject, notebooks) to run Kedro in."""
    shutil.copytree(PROJECT_ROOT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    (dest / "data" / "01_raw").mkdir(parents=True)
    shutil.copy(SAMPLE, dest / "data" / "01_raw" / SAMPLE.name)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy(PROJECT_ROOT / ".telemetry", dest / ".telemetry")
    shutil.copytree(PROJECT_ROOT / "notebooks", dest / "notebooks")
    # Kedro wants src/ beside conf/; the package itself is imported from the installed project.
    (dest / "src").mkdir()
    return dest


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the project to run Kedro in."""
    return make_project_copy(tmp_path / "project")


@pytest.fixture(scope="session")
def _trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after ``kedro run --pipelines data_processing,training`` with one GRPO step:
    made once per session for the tests that start at the evaluation."""
    from tests.kedro_cli import kedro_run

    project = make_project_copy(tmp_path_factory.mktemp("trained") / "project")
    prepared = kedro_run(
        project, "--pipelines", "data_processing,training", "--params", "training.max_steps=1"
    )
    assert prepared.returncode == 0, (prepared.stdout + prepared.stderr)[-3000:]
    return project


@pytest.fixture
def trained_project_copy(_trained_project: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained project (split, base model, adapter), without its MLflow
    record: what a test's evaluation runs write is its own."""
    project = tmp_path / "project"
    shutil.copytree(
        _trained_project, project, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", ".viz")
    )
    return project


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """MLflow, tracking into a fresh SQLite store in ``tmp_path`` (the working directory), with
    every run it leaves active ended afterwards."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def put_blocks(catalog: Any, pipe: Any, **blocks: Any) -> None:
    """The validated ``blocks`` under every ``params:`` name ``pipe`` reads, as Kedro's context
    puts a typed parameter and each of its fields (``params:evaluation.judge``) in the catalog
    of a ``kedro run``."""
    from kedro.validation.utils import get_typed_fields

    def put(name: str, value: Any) -> None:
        if f"params:{name}" in pipe.inputs():
            catalog[f"params:{name}"] = value
        fields = value if isinstance(value, dict) else get_typed_fields(value)
        for key, field in (fields or {}).items():
            put(f"{name}.{key}", field)

    for name, block in blocks.items():
        put(name, block)


@pytest.fixture(autouse=True)
def _project_logs_reach_caplog():
    """Kedro applies conf/logging.yml when a test imports it, and there the project's logger has
    console handlers of its own and does not propagate; in tests it propagates to the root, where
    pytest's caplog listens."""
    project = logging.getLogger("hle_reasoning")
    project.handlers.clear()
    project.propagate = True


from tests.fake_hub import fake_hub  # noqa: E402, F401  (a fixture: a temporary HF_HOME)
