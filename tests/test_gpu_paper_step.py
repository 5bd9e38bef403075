"""benchmarks/gpu_paper_step.py rehearsed on CPU, as it will run on a bare GPU machine: with
benchmarks/gpu_machine/ on PYTHONPATH, every installed distribution that is neither on the GPU
machine's published package list nor among the carried wheels is hidden (kedro,
mlflow among them; pydantic travels as a carried wheel)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

GPU_MACHINE = PROJECT_ROOT / "benchmarks" / "gpu_machine"
SCRIPT = PROJECT_ROOT / "benchmarks" / "gpu_paper_step.py"


def gpu_machine_env() -> dict[str, str]:
    """The environment of a process that sees only the GPU machine's packages and the wheels."""
    return {**os.environ, "PYTHONPATH": str(GPU_MACHINE), "HF_HUB_OFFLINE": "1"}


def test_the_rehearsal_hides_what_the_gpu_machine_lacks(tmp_path):
    probe = (
        "import importlib.util as u, sitecustomize\n"
        "names = ('pydantic', 'kedro', 'mlflow', 'openai', 'torch', 'yaml', 'trl', 'bitsandbytes')\n"
        "print({n: u.find_spec(n) is not None for n in names})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=gpu_machine_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = eval(result.stdout)  # a dict literal printed by the probe
    assert seen == {
        "pydantic": True,  # not on the GPU machine: a carried wheel (the configuration's blocks)
        "kedro": False,
        "mlflow": False,
        "openai": False,
        "torch": True,  # on its list
        "yaml": True,
        "trl": True,  # carried wheels
        "bitsandbytes": True,
    }


def test_the_carried_wheels_are_pinned_installed_here_and_complete():
    """Every carried wheel is pinned (pip download --no-deps), is the version tested here, and
    every requirement of each is on the GPU machine or carried too (datasets needs dill and
    multiprocess, which the GPU machine lacks)."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    # Read as a plain module (it hides packages only when Python runs it as sitecustomize).
    spec = importlib.util.spec_from_file_location("gpu_machine", GPU_MACHINE / "sitecustomize.py")
    gpu_machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_machine)
    assert not hasattr(gpu_machine, "HIDDEN")
    pins = {}
    for line in (GPU_MACHINE / "carried_wheels.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, pinned = requirement.split("==")
            pins[name] = pinned
    assert {"dill", "multiprocess", "datasets", "trl", "bitsandbytes"} <= set(pins)
    assert {name: version(name) for name in pins} == pins
    there = gpu_machine.listed(GPU_MACHINE / "packages.txt") | set(pins)
    for name in pins:
        for line in requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert gpu_machine.normalized(requirement.name) in there, (name, line)


def test_check_imports_passes_on_the_gpu_machines_packages(tmp_path):
    """The device command's first step: every import the run needs, in seconds (pydantic,
    reached through the configuration package, once made it fail here as on the GPU)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check-imports"],
        cwd=tmp_path,
        env=gpu_machine_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.startswith("imports ok: ")


def test_check_imports_fails_naming_the_missing_module(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("gpu_paper_step", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setitem(sys.modules, "trl", None)  # as on the GPU machine without its wheel
    assert "trl" in script.NEEDED
    assert script.check_imports(("yaml", "trl")) == 1
    assert "missing imports:\n  trl: " in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_rehearsal_runs_on_the_gpu_machines_packages(tmp_path):
    out = tmp_path / "figures.json"
    env = gpu_machine_env()
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
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
    resident, held = figures["resident_weights"], figures["loaded_weight_bytes"]
    assert resident["total_gb"] * 1e9 == pytest.approx(held["tensor_bytes"] + held["absmax_bytes"])
    assert figures["completions_per_step"] == 4  # the proposal: 2 prompts x 2 completions
    assert figures["peak_memory"]["peak_rss_gb"] > 0
    for line in (
        "quantized model size",
        "eq. (6) estimate",
        "resident weights",
        "time per step",
        "completion tokens / s",
    ):
        assert line in result.stdout
