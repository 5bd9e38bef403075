"""evaluation: the baseline and the GRPO fine-tuned model answer the test split, are judged and
scored as HLE does, and are compared in the proposal's Table 1.

One variant pipeline, instantiated twice under the namespaces ``baseline`` (the base model) and
``finetuned`` (base + LoRA adapter), on the test questions the model takes (a text-only
model: the text-only subset, ``select_test_questions``): kedro-viz shows them side by side, and every output is
prefixed with its namespace (``baseline.predictions``, ``finetuned.predictions``, ...) but the
per-category figures that the report combines (``baseline_metrics_by_category``, ...). Then
``compare_variants`` pairs both variants' predictions (McNemar, Newcombe's interval, the
calibration bootstrap) and ``report_evaluation`` writes Table 1 and the report.

The comparison models (``evaluation.comparison_models``, none by default) answer, are judged,
scored and compared with the fine-tuned variant by one node of each kind
(``comparison_models_pipeline``), their rows measured beside the variants' in Table 1.
"""

import inspect
import warnings
from functools import wraps

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.pipelines.evaluation import comparison_models, nodes, reporting

VARIANTS = ("baseline", "finetuned")
SHARED_INPUTS = {
    "test_questions",
    "test_subset",
    "base_model",
    "judge_endpoint",
    "answer_endpoints",
}
SHARED_PARAMETERS = {
    "params:evaluation",
    "params:evaluation.answering",
    "params:evaluation.generation",
    "params:evaluation.judge",
    "params:evaluation.metrics",
    "params:model",
    "params:distributed",
}


def _bind(func, variant: str):
    """``func`` with ``variant=`` fixed, keeping its name, signature, type hints and, for a
    generator function, its streaming (Kedro saves each yielded chunk as it comes)."""
    if inspect.isgeneratorfunction(func):

        @wraps(func)
        def bound(*args, **kwargs):
            yield from func(*args, variant=variant, **kwargs)

    else:

        @wraps(func)
        def bound(*args, **kwargs):
            return func(*args, variant=variant, **kwargs)

    return bound


def variant_pipeline(variant: str, with_adapter: bool) -> Pipeline:
    """The evaluation of one model variant (before namespacing)."""
    adapter = ["lora_adapter"] if with_adapter else []
    return pipeline(
        [
            node(
                _bind(nodes.answer_questions, variant),
                inputs=[
                    "test_questions",
                    "base_model",
                    "previous_responses",
                    "params:evaluation.generation",
                    "params:model",
                    "params:distributed",
                    "response_shards",
                    "params:evaluation.answering",
                    "answer_endpoints",
                    *adapter,
                ],
                outputs="responses",
                name="answer_questions_node",
            ),
            node(
                _bind(nodes.judge_responses, variant),
                inputs=[
                    "test_questions",
                    "responses",
                    "previous_verdicts",
                    "judge_endpoint",
                    "params:evaluation.judge",
                ],
                outputs="verdicts",
                name="judge_responses_node",
            ),
            node(
                _bind(nodes.score_answers, variant),
                inputs=[
                    "test_questions",
                    "responses",
                    "verdicts",
                    "params:evaluation.metrics",
                    "params:evaluation.judge",
                ],
                outputs=["predictions", "metrics_by_category"],
                name="score_answers_node",
            ),
            node(
                _bind(reporting.publish_variant, variant),
                inputs=[
                    "predictions",
                    "metrics_by_category",
                    "params:evaluation",
                    "params:model",
                    "judge_endpoint",
                    "base_model",
                    "test_subset",
                    *adapter,
                ],
                outputs=["reliability_diagram", "mlflow_run", "mlflow_metrics"],
                name="publish_variant_node",
            ),
        ]
    )


def comparison_models_pipeline() -> list:
    """The nodes of ``evaluation.comparison_models``: one node of each kind for every model,
    one store per table keyed by ``variant`` (``comparison_models`` module)."""
    models = "params:evaluation.comparison_models"
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="One or more dataset names contain '.'", category=UserWarning
        )
        compare = node(
            comparison_models.compare_comparison_models,
            inputs=[
                "finetuned.predictions",
                "comparison_models_predictions",
                "comparison_models_metrics_by_category",
                "params:evaluation",
            ],
            outputs=["comparison_models_comparison", "comparison_models_mlflow_metrics"],
            name="compare_comparison_models_node",
        )
    return [
        node(
            comparison_models.answer_comparison_models,
            inputs=[
                "test_questions",
                "comparison_models_previous_responses",
                "params:evaluation.generation",
                models,
                "answer_endpoints",
            ],
            outputs="comparison_models_responses",
            name="answer_comparison_models_node",
        ),
        node(
            comparison_models.judge_comparison_models,
            inputs=[
                "test_questions",
                "comparison_models_responses",
                "comparison_models_previous_verdicts",
                "judge_endpoint",
                "params:evaluation.judge",
                models,
            ],
            outputs="comparison_models_verdicts",
            name="judge_comparison_models_node",
        ),
        node(
            comparison_models.score_comparison_models,
            inputs=[
                "test_questions",
                "comparison_models_responses",
                "comparison_models_verdicts",
                "params:evaluation.metrics",
                "params:evaluation.judge",
                models,
            ],
            outputs=["comparison_models_predictions", "comparison_models_metrics_by_category"],
            name="score_comparison_models_node",
        ),
        compare,
    ]


def create_pipeline(**kwargs) -> Pipeline:
    variants = [
        pipeline(
            variant_pipeline(variant, with_adapter=variant == "finetuned"),
            namespace=variant,
            inputs=SHARED_INPUTS | ({"lora_adapter"} if variant == "finetuned" else set()),
            # The report reads each variant's figures: exposed under un-namespaced names.
            outputs={"metrics_by_category": f"{variant}_metrics_by_category"},
            parameters=SHARED_PARAMETERS,
        )
        for variant in VARIANTS
    ]
    with warnings.catch_warnings():
        # Kedro warns about any dotted dataset name outside its namespace; reading the two
        # variants' namespaced predictions from one node is how namespaced pipelines are joined.
        warnings.filterwarnings(
            "ignore", message="One or more dataset names contain '.'", category=UserWarning
        )
        compare = node(
            nodes.compare_variants,
            inputs=["baseline.predictions", "finetuned.predictions", "params:evaluation"],
            outputs=["comparison", "comparison_metrics", "comparison_summary"],
            name="compare_variants_node",
        )
    select = node(
        nodes.select_test_questions,
        inputs=["focus_test", "base_model"],
        outputs=["test_questions", "test_subset"],
        name="select_test_questions_node",
    )
    report = pipeline(
        [
            compare,
            *comparison_models_pipeline(),
            node(
                reporting.report_evaluation,
                inputs=[
                    "baseline_metrics_by_category",
                    "finetuned_metrics_by_category",
                    "params:evaluation",
                    "params:model.name_or_path",
                    "judge_endpoint",
                    "comparison",
                    "test_subset",
                    "comparison_models_metrics_by_category",
                    "comparison_models_comparison",
                    "training_completions",
                ],
                outputs=["table_1", "metrics_by_category", "evaluation_report"],
                name="report_evaluation_node",
            ),
        ]
    )
    return pipeline([select, *variants, report], tags="evaluation")
