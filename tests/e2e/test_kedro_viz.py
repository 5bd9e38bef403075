"""kedro-viz shows the study's pipelines: served offline, rendered in headless Chromium (without
its feature-hints pop-up and version banner), photographed for the docs, stopped cleanly."""

import json
import re

import pytest

from tests import screenshots
from tests.e2e.browser import Browser, chromium
from tests.e2e.servers import BIN, free_port, get_json, group_alive, port_open, server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What a browser that has used kedro-viz once remembers (kedro-viz's localStorage entry
# "KedroViz"): the feature hints ("New feature hints" in its settings) switched off.
KEDRO_VIZ_STORAGE = {"KedroViz": json.dumps({"showFeatureHints": False})}
# kedro-viz asks PyPI for its latest version (/api/version); offline it answers "None" and the
# page announces "Kedro-Viz None is here!". The test browser gets no answer, as when the check
# fails, and kedro-viz shows no banner.
VERSION_CHECK = "*/api/version*"


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
    with server(command, project_copy, port, "/api/main") as proc:
        graph = get_json(f"http://127.0.0.1:{port}/api/main")
        pipelines = {p["id"] for p in graph["pipelines"]}
        assert {"__default__", "data_processing"} <= pipelines
        tasks = [n for n in graph["nodes"] if n["type"] == "task"]
        assert any(n["name"] == "split_questions_node" for n in tasks)
        # The live graph is the registered pipeline: the screenshot shows every node.
        size = screenshots.graph_size()
        assert len(tasks) == size["nodes"]
        # Layers name the data stages, in order.
        assert graph["layers"][0] == "raw"

        with Browser(tmp_path / "profile") as browser:
            top_level = [n["name"] for n in tasks if not n["modular_pipelines"]]
            text = browser.open(
                f"http://127.0.0.1:{port}/",
                wait_for=top_level[:3],
                local_storage=KEDRO_VIZ_STORAGE,
                blocked=[VERSION_CHECK],
            )
            html = browser.html()
            shot = browser.screenshot(screenshots.folder() / "kedro_viz.png")
        rendered = set(
            re.findall(r'class="pipeline-node pipeline-node--(task|data|modularPipeline)', html)
        )
        assert "task" in rendered
        missing = [name for name in top_level if name not in html]
        assert not missing, f"nodes not drawn by kedro-viz: {missing}"
        namespaces = {ns for n in tasks for ns in (n["modular_pipelines"] or [])}
        for ns in namespaces:
            assert ns in html, f"modular pipeline {ns} not drawn"
        # Neither the onboarding pop-up nor the version banner covers the graph.
        assert "feature-hints__" not in html and not re.search(r"\b1 of \d", text)
        assert "is here!" not in text and "update-reminder-unexpanded" not in html
        assert shot.stat().st_size > 20_000
        screenshots.record("kedro_viz.png", {"pipeline": "__default__", **size})
        pgid = proc.pid
    assert not group_alive(pgid), "kedro-viz left a process running (uvicorn child?)"
    assert not port_open(port)
