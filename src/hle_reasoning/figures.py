"""A figure's image, rendered once: a report file and its MLflow artifact are the same bytes.

A node's figure is saved twice, as a report file (``datasets.MatplotlibDataset``) and into an
MLflow run (``tracking.log_artifact``); rendering it is most of the cost of either (a third of
a second for a reliability diagram on two cores). ``rendered`` keeps the last rendering of each
figure, with the ``savefig`` arguments it was made with, for as long as the figure lives. A node
returns its figures finished: nothing draws on them after they are saved.
"""

from __future__ import annotations

import io
import weakref
from typing import Any

_RENDERED: weakref.WeakKeyDictionary[Any, tuple[str, bytes]] = weakref.WeakKeyDictionary()


def rendered(figure: Any, **savefig_args: Any) -> bytes:
    """``figure.savefig(buffer, **savefig_args)``'s bytes; the same call again reuses them."""
    key = repr(sorted(savefig_args.items()))
    cached = _RENDERED.get(figure)
    if cached is not None and cached[0] == key:
        return cached[1]
    buffer = io.BytesIO()
    figure.savefig(buffer, **savefig_args)
    image = buffer.getvalue()
    _RENDERED[figure] = (key, image)
    return image
