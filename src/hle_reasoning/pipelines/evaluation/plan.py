"""What the evaluation measures: every variant (baseline, fine-tuned, each comparison model) as
one kind, and the plan every node of the chain reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hle_reasoning.config import AnsweringConfig, EvaluationConfig, ModelConfig
from hle_reasoning.datasets.evaluation import JudgeEndpoint
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.hle.formatting import slug
from hle_reasoning.modeling import families

logger = logging.getLogger(__name__)

STUDY_VARIANTS = ("baseline", "finetuned")


@dataclass(frozen=True)
class Variant:
    """One evaluated model. ``answering``: who answers it (``evaluation.answering.<name>``, or
    a comparison model's own block, whose backend is ``openai``); ``parameter``: where that
    block is in the YAML (for error messages); ``adapter``: answered with the LoRA adapter (the
    fine-tuned model); ``text_only``: it takes no images (answers the questions without one);
    ``comparison``: a comparison model (``evaluation.comparison_models``)."""

    name: str
    answering: AnsweringConfig
    parameter: str
    label: str
    adapter: bool = False
    text_only: bool = False
    comparison: bool = False

    @property
    def slug(self) -> str:
        """Its files' name (``data/07_model_output/<slug>/...``)."""
        return slug(self.name)

    @property
    def metric_prefix(self) -> str:
        """Where its figures go on the kedro run's MLflow run, under ``evaluation.``:
        ``baseline``, ``finetuned``, ``comparison_models.<slug>``."""
        return f"comparison_models.{self.slug}" if self.comparison else self.name


@dataclass(frozen=True)
class EvaluationPlan:
    """Everything the chain's nodes share: the variants, the typed ``evaluation`` and ``model``
    blocks, the saved base model, the test subset taken, and the judge's endpoint."""

    variants: tuple[Variant, ...]
    evaluation: EvaluationConfig
    model: ModelConfig
    base_model: str
    subset: dict[str, Any]
    judge_endpoint: JudgeEndpoint

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    @property
    def comparison_models(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.comparison)

    def judge_label(self, style: str = "tag") -> str:
        return self.evaluation.judge.label(self.judge_endpoint.model, style=style)


def variants_of(evaluation: EvaluationConfig, model: ModelConfig) -> tuple[Variant, ...]:
    """Baseline, fine-tuned and every comparison model, in that order."""
    from hle_reasoning.pipelines.evaluation.backends import answering_for

    study = tuple(
        Variant(
            name=name,
            answering=answering_for(evaluation.answering, name),
            parameter=f"evaluation.answering.{name}",
            label=evaluation.report.label(name, model.name_or_path),
            adapter=name == "finetuned",
        )
        for name in STUDY_VARIANTS
    )
    others = tuple(
        Variant(
            name=entry.name,
            answering=entry.answering,
            parameter=f"evaluation.comparison_models[{i}]",
            label=entry.name,
            text_only=entry.text_only,
            comparison=True,
        )
        for i, entry in enumerate(evaluation.comparison_models)
    )
    return study + others


def plan_evaluation(
    focus_test: pd.DataFrame,
    base_model: str,
    judge_endpoint: JudgeEndpoint,
    evaluation_config: EvaluationConfig,
    model_config: ModelConfig,
) -> tuple[pd.DataFrame, dict[str, Any], EvaluationPlan]:
    """The test questions the model takes (a text-only model: the text-only subset), what was
    left out (for the report, Table 1, MLflow and the run's summary), and the plan."""
    family = families.family_of(base_model)
    questions, subset = families.questions_for(focus_test, family, split="test")
    if subset["note"]:
        logger.info("%s (%s family)", subset["note"], family.name)
    plan = EvaluationPlan(
        variants=variants_of(evaluation_config, model_config),
        evaluation=evaluation_config,
        model=model_config,
        base_model=base_model,
        subset=subset,
        judge_endpoint=judge_endpoint,
    )
    return questions, subset, plan


def questions_of(questions: pd.DataFrame, variant: Variant) -> pd.DataFrame:
    """The test questions ``variant`` answers: all, or those without an image (``text_only``)."""
    if not variant.text_only:
        return questions
    return questions[~questions["image"].map(has_image).astype(bool)].reset_index(drop=True)


def rows_of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one variant in a table of every variant's, without the ``variant`` column."""
    if "variant" not in table.columns:
        return table.iloc[0:0]
    return (
        table[table["variant"].astype(str) == name].drop(columns="variant").reset_index(drop=True)
    )


def partitions(parts: dict[str, Any], plan: EvaluationPlan) -> dict[str, pd.DataFrame]:
    """A per-variant dataset's partitions (``{slug: frame or loader}``) as ``{name: frame}``, for
    the plan's variants only (files of a variant no longer configured are left out)."""
    out = {}
    for variant in plan.variants:
        part = parts.get(variant.slug)
        if part is None:
            raise KeyError(f"{variant.name}: no {variant.slug!r} partition (got {sorted(parts)})")
        out[variant.name] = part() if callable(part) else part
    return out
