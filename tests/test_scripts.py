"""The two set-up commands: scripts/study and scripts/test make the environment when it is
missing or stale and reuse it otherwise; .ci/run runs scripts/test."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def test_ci_runs_the_test_script_in_a_fresh_environment():
    commands = [
        line.strip()
        for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-2:] == ["rm -rf .venv-ci", "HLE_VENV=.venv-ci scripts/test"]
    assert "export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1" in commands
    assert any("apt-get install -y -qq chromium" in c for c in commands)


def test_both_scripts_set_up_through_one_environment_file():
    for name in ("study", "test"):
        script = PROJECT_ROOT / "scripts" / name
        assert script.stat().st_mode & 0o111, f"scripts/{name} is not executable"
        assert "source scripts/environment.sh" in script.read_text()
    assert "exec kedro run" in (PROJECT_ROOT / "scripts" / "study").read_text()
    assert "exec python -m pytest" in (PROJECT_ROOT / "scripts" / "test").read_text()


@pytest.mark.slow
def test_the_environment_is_made_once_and_remade_when_its_files_change(tmp_path):
    """A small project with the real environment.sh: made, reused, remade after a change."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "scripts" / "environment.sh", project / "scripts")
    (project / "constraints.txt").write_text("torch==2.13.0\n")
    (project / "pyproject.toml").write_text("")
    (project / "requirements.txt").write_text("-c constraints.txt\n")

    def setup() -> str:
        done = subprocess.run(
            [
                "bash",
                "-c",
                "source scripts/environment.sh && python -c 'import sys; print(sys.prefix)'",
            ],
            cwd=project,
            env={"PATH": "/usr/bin:/bin", "HLE_VENV": "venv", "HLE_TORCH_INDEX": ""},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = setup()
    assert "creating the virtual environment venv" in first and "installing" in first
    assert Path(first.splitlines()[-1]) == project / "venv"
    again = setup()
    assert "creating" not in again and "installing" not in again
    (project / "requirements.txt").write_text("-c constraints.txt\n# a change\n")
    changed = setup()
    assert "creating" not in changed and "installing the project" in changed
