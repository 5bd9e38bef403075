"""What the nodes return for a person to read: typed summaries the closing summary picks by type.

``StudySummaryHook`` collects these objects from the nodes' outputs (``after_node_run``) by their
class, never by dataset or metric names, so renaming a catalog entry or an MLflow prefix cannot
silently empty the closing summary.

* ``TrainingSummary``: the training run's summary (a dict, so the JSON dataset writes it as
  data/08_reporting/training_summary.json).
* ``VariantRun``: one evaluated variant's MLflow child run (tags, params, metrics, artifacts),
  saved by ``MlflowChildRunDataset``.
* ``hle_reasoning.hle.scoring.comparison.PairedComparison``: fine-tuned against baseline (the
  ``comparison_summary`` output of the evaluation's ``compare_variants`` node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hle_reasoning.hle.formatting import format_number


def _width(metric: Any) -> int:
    """A console summary column: its heading, or room for ``100.00 ± 10.00`` / ``100.000``."""
    return max(len(metric.heading(short=True)), 16 if metric.interval else 8)


class TrainingSummary(dict):
    """The summary of one GRPO run: steps, timings, final reward / KL / loss, memory."""

    def headline(self) -> str:
        measured = self["memory"]["measured"]
        peak = measured.get("peak_cuda_allocated_gb", measured.get("peak_rss_gb"))
        estimate = self["memory"].get("resident_estimate")
        resident = (
            f"; with the resident weights {format_number(estimate['total_gb'])} GB"
            if estimate
            else ""
        )
        line = (
            f"training: {self['steps']} GRPO steps, {format_number(self.get('mean_step_time_s'))} s/step, "
            f"final reward {format_number(self.get('final_reward'), 3)}, peak memory {format_number(peak)} GB "
            f"(eq. (6): {format_number(self['memory']['eq6']['total_gb'])} GB{resident})"
        )
        if self.get("mean_cut_share") is not None:  # the completions table's figures
            line += (
                f"; no learning signal in {self['no_signal_steps']} of {self['steps']} steps, "
                f"{format_number(100 * self['mean_cut_share'], 0)}% of completions cut"
            )
        return line


@dataclass(frozen=True)
class VariantRun:
    """One evaluated variant as its MLflow child run records it; ``metrics`` holds the overall
    figures (the metric registry's, ``accuracy``, ``accuracy_ci``, ``calibration_error``, ...)
    and per category."""

    variant: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        """``run["metrics"]``: the fields read as a payload's keys."""
        return getattr(self, key)

    @staticmethod
    def header() -> str:
        """The heading line of ``headline``: a column per score of the metric registry."""
        from hle_reasoning.hle.scoring.metrics import SCORES  # numpy: not at start-up

        cells = "".join(f"  {m.heading(short=True).lower():>{_width(m)}}" for m in SCORES)
        return f"  {'variant':<12}{'judged / answered':>18}{cells}"

    def headline(self) -> str:
        """The variant's line under ``header``: its counts and each score of the registry."""
        from hle_reasoning.hle.scoring.metrics import SCORES

        m = self.metrics
        counts = f"{format_number(m.get('judged'), 0)} / {format_number(m.get('answered'), 0)}"
        cells = "".join(f"  {metric.show(m):>{_width(metric)}}" for metric in SCORES)
        return f"  {self.variant:<12}{counts:>18}{cells}"

    def notes(self) -> list[str]:
        """An incomplete judging, and the rules judge's agreement with an LLM judge."""
        m, notes = self.metrics, []
        if self.tags.get("subset"):
            notes.append(f"  {self.variant}: {self.tags['subset']}")
        judged, answered = m.get("judged"), m.get("answered")
        if judged is not None and answered is not None and answered > judged:
            notes.append(
                f"  {self.variant}: incomplete: rerun to judge the remaining "
                f"{int(answered - judged)}"
            )
        rate = m.get("rules_agreement")
        if rate is not None and not math.isnan(rate):
            notes.append(
                f"  {self.variant}: the rules judge agrees with the LLM judge on {rate:.1f}% "
                f"({format_number(m.get('rules_false_accepts'), 0)} false accepts, "
                f"{format_number(m.get('rules_false_rejects'), 0)} false rejects)"
            )
        return notes
