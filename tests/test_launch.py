"""What `kedro run` makes sure of around Kedro (hle_reasoning.launch): the run lock, the conf
files, the MLflow status of a run that does not finish, and a broken mlflow.db named."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hle_reasoning import launch, tracking

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_broken_conf_files_are_named_with_line_and_what_to_do(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf" / "base", conf / "base")
    write(conf / "local" / "parameters.yml", "training:\n  grpo:\n    beta: [0.1\n")
    write(conf / "local" / "credentials.yml", "- hle_judge\n- api_key: sk-test\n")
    assert launch.config_file_problems(conf, ["base"]) == []  # the shipped conf is fine
    as_list, invalid = launch.config_file_problems(conf, ["base", "local"])
    assert f"{conf / 'local' / 'parameters.yml'}:4:1: not valid YAML" in invalid
    assert "credentials.yml holds a list" in as_list and "hle_judge: {api_key" in as_list
    # A plain string (a key pasted alone) is silently ignored by Kedro: named here.
    write(conf / "local" / "parameters.yml", "{}\n")
    write(conf / "local" / "credentials.yml", "sk-test-not-a-mapping\n")
    (string,) = launch.config_file_problems(conf, ["base", "local"])
    assert "credentials.yml holds a str" in string
    write(conf / "local" / "credentials.yml", "hle_judge: sk-test\n")
    (entry,) = launch.config_file_problems(conf, ["base", "local"])
    assert "the entry 'hle_judge' is a str" in entry


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_any_conf_file_text_gives_problems_never_an_exception(tmp_path, text):
    write(tmp_path / "conf" / "local" / "credentials.yml", text)
    write(tmp_path / "conf" / "local" / "parameters.yml", text)
    problems = launch.config_file_problems(tmp_path / "conf", ["local"])
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hle_reasoning.launch import run_lock
    with run_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path):
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(launch.LaunchError, match=rf"\(pid {holder.pid}\) is running"):
            with launch.run_lock(data):
                pass
    finally:
        holder.kill()
        holder.wait()
    with launch.run_lock(data) as path:  # a killed holder leaves nothing that blocks
        assert path.read_text().strip() == str(__import__("os").getpid())


def run_status(db: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "select r.name, r.status, t.value from runs r left join tags t "
            "on t.run_uuid = r.run_uuid and t.key = ? order by r.start_time",
            (tracking.ENDED_BY_TAG,),
        ).fetchall()


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (KeyboardInterrupt(), "KILLED", "Ctrl-C"),
        (launch.Terminated("signal SIGTERM"), "KILLED", "signal SIGTERM"),
        (RuntimeError("a hook failed\nsecond line"), "FAILED", "RuntimeError: a hook failed"),
    ],
)
def test_a_run_that_does_not_finish_is_not_recorded_finished(tmp_path, error, status, reason):
    db = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    with pytest.raises(type(error)):
        with launch.recorded_outcome():
            mlflow.start_run(run_name="__default__")
            mlflow.start_run(run_name="baseline", nested=True)
            raise error
    assert mlflow.active_run() is None
    assert run_status(db) == [("__default__", status, reason), ("baseline", status, reason)]


def test_a_broken_mlflow_db_is_named_with_what_to_do(tmp_path):
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"not a database " * 100)
    uri = f"sqlite:///{corrupt}"
    with pytest.raises(Exception) as raised:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    message = launch.tracking_store_problem(raised.value, uri)
    assert f"The MLflow database {corrupt}" in message
    assert (
        "not a readable SQLite database" in message and f"mv {corrupt} {corrupt}.broken" in message
    )

    # A schema left behind (a migration interrupted or run twice): MLflow refuses it.
    fresh, stale = tmp_path / "fresh.db", tmp_path / "stale.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments()
    shutil.copy(fresh, stale)  # a new path: MLflow keeps one store per URI
    with sqlite3.connect(stale) as con:
        con.execute("update alembic_version set version_num = '75868b020152'")
    with pytest.raises(Exception) as raised:
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{stale}").search_experiments()
    message = launch.tracking_store_problem(raised.value, f"sqlite:///{stale}")
    assert "half-migrated" in message and f"mlflow db upgrade sqlite:///{stale}" in message
    assert launch.tracking_store_problem(RuntimeError("unrelated"), uri) is None


def test_a_worker_machine_is_known_before_kedro_starts(tmp_path):
    """Machine 1 of a multi-machine run shares machine 0's folder and writes nothing: it takes
    no lock. Its rank comes from --params over the environment's parameters files."""
    conf = tmp_path / "conf"
    write(conf / "base" / "parameters.yml", "distributed:\n  machine_rank: 1\n")
    assert launch.machine_rank(conf, ["base", "local"], {}) == 1
    write(conf / "local" / "parameters.yml", "distributed:\n  machine_rank: 0\n")
    assert launch.machine_rank(conf, ["base", "local"], {}) == 0
    assert launch.machine_rank(conf, ["base", "local"], {"distributed": {"machine_rank": 0}}) == 0
    assert launch.machine_rank(conf, ["base"], {"distributed": {"machine_rank": 2}}) == 2
