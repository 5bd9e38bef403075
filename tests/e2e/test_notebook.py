"""The notebook runs top to bottom on the finished default study."""

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_notebook_runs_on_the_default_study(finished_study):
    notebook_dir = finished_study.path / "notebooks"
    shutil.copy(PROJECT_ROOT / "notebooks" / "hle_study.ipynb", notebook_dir / "hle_study.ipynb")
    nb = nbformat.read(notebook_dir / "hle_study.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebook_dir)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # Figure 1, the reward plot, the training curves and two reliability diagrams.
    assert len(images) >= 5
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "Tiny Mllama" in html and "GPT-4o" in html  # Table 1 with the paper's and our rows
    text = "".join(o.get("text", "") for o in outputs)
    assert "steps on 27 questions" in text
    assert "32 completions over 8 steps" in text  # GRPO's completions, through the catalog
    # The paired comparison and what the 73 test questions can detect.
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "its 95% interval includes zero" in markdown
    assert "The smallest difference 73 questions could show at all is 6.8 pp" in markdown
    # Running it did not create a second MLflow store inside notebooks/.
    assert not (notebook_dir / "mlflow.db").exists()
