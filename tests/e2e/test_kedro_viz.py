"""kedro-viz shows the study's pipelines: served offline, rendered in headless Chromium, stopped cleanly."""

import os
import re
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

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_kedro_viz_renders_the_pipelines(project_copy, tmp_path):
    port = free_port()
    command = [
        str(BIN / "kedro"),
        "viz",
        "run",
        "--no-browser",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    shots = Path(os.environ.get("HLE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with server(command, project_copy, port, "/api/main") as proc:
        graph = get_json(f"http://127.0.0.1:{port}/api/main")
        pipelines = {p["id"] for p in graph["pipelines"]}
        assert {"__default__", "data_processing"} <= pipelines
        tasks = [n for n in graph["nodes"] if n["type"] == "task"]
        assert any(n["name"] == "split_questions_node" for n in tasks)
        # Layers name the data stages, in order.
        assert graph["layers"][:2] == ["raw", "primary"] or graph["layers"][0] == "raw"

        screenshot = shots / "kedro_viz.png"
        dom = chromium_render(f"http://127.0.0.1:{port}/", tmp_path / "profile", screenshot)
        rendered = set(
            re.findall(r'class="pipeline-node pipeline-node--(task|data|modularPipeline)', dom)
        )
        assert "task" in rendered
        top_level = [n["name"] for n in tasks if not n["modular_pipelines"]]
        missing = [name for name in top_level if name not in dom]
        assert not missing, f"nodes not drawn by kedro-viz: {missing}"
        namespaces = {ns for n in tasks for ns in (n["modular_pipelines"] or [])}
        for ns in namespaces:
            assert ns in dom, f"modular pipeline {ns} not drawn"
        assert screenshot.stat().st_size > 20_000
        pgid = proc.pid
    assert not group_alive(pgid), "kedro-viz left a process running (uvicorn child?)"
    assert not port_open(port)
