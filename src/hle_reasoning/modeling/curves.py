"""Training curves: the per-step GRPO histories as a table and as one figure."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

# Panels of the figure: title -> history names drawn in it (missing names are skipped).
PANELS = {
    "Reward": ("reward",),
    "Reward per function": None,  # every reward.<function>
    "Loss": ("loss",),
    "KL to the reference": ("kl",),
    "Completion length (tokens)": ("completion_length",),
    "Learning rate": ("learning_rate",),
}


def history_frame(history: Mapping[str, list[Mapping[str, float]]]) -> pd.DataFrame:
    """``{metric: [{"step", "value"}, ...]}`` as one row per step and one column per metric."""
    rows: dict[int, dict[str, float]] = {}
    for name, points in history.items():
        for point in points:
            rows.setdefault(int(point["step"]), {})[name] = float(point["value"])
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    frame.index.name = "step"
    return frame.reset_index()


def training_curves_figure(history: pd.DataFrame, title: str = "GRPO training") -> plt.Figure:
    """Reward (overall and per function), loss, KL, completion length and learning rate per step."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), dpi=110, sharex=True)
    for ax, (panel, names) in zip(axes.flat, PANELS.items(), strict=True):
        columns = (
            [c for c in history.columns if c.startswith("reward.")]
            if names is None
            else [c for c in names if c in history.columns]
        )
        for column in columns:
            ax.plot(
                history["step"], history[column], marker=".", label=column.removeprefix("reward.")
            )
        if names is None and columns:
            ax.legend(fontsize=8)
        if not columns:
            ax.text(
                0.5,
                0.5,
                "not logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
