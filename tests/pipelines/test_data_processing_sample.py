"""Bad input stops `kedro run` and leaves earlier results intact, on the bundled sample
(the real-HLE version of this test needs the real HLE data in ``$HLE_SHARED_DIR``)."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLE
from tests.kedro_cli import kedro_run_in_process
from tests.pipelines.exports import assert_a_broken_export_changes_nothing

pytestmark = pytest.mark.slow


def test_a_broken_export_is_named_and_changes_nothing(project_copy):
    first = kedro_run_in_process(project_copy, "--pipelines", "data_processing")
    assert first.returncode == 0, first.stderr[-3000:]
    assert_a_broken_export_changes_nothing(project_copy, SAMPLE)
