"""evaluation: the baseline, the GRPO fine-tuned model and every comparison model answer the
test split, are judged and scored as HLE does, and are compared in the proposal's Table 1.

One chain of nodes for every variant (``plan.Variant``: baseline, fine-tuned, each of
``evaluation.comparison_models``): ``plan_evaluation`` takes the test questions the model takes
(a text-only model: the text-only subset) and lists the variants; then ``answer_questions`` ->
``judge_responses`` -> ``score_answers`` -> ``publish_variants`` (a reliability diagram, an
MLflow child run and metrics per variant) -> ``compare_variants`` (fine-tuned against baseline
and against each comparison model: McNemar, Newcombe's interval, the calibration bootstrap) ->
``report_evaluation`` (Table 1 and the report). Kedro fixes a pipeline before it reads
parameters, so each node handles every variant, and each table is one dataset with one file per
variant (``data/07_model_output/<variant>/...``).
"""

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.pipelines.evaluation import nodes, plan, reporting


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                plan.plan_evaluation,
                inputs=[
                    "focus_test",
                    "base_model",
                    "judge_endpoint",
                    "params:evaluation",
                    "params:model",
                ],
                outputs=["test_questions", "test_subset", "evaluation_plan"],
                name="plan_evaluation_node",
            ),
            node(
                nodes.answer_questions,
                inputs=[
                    "evaluation_plan",
                    "test_questions",
                    "lora_adapter",
                    "answer_endpoints",
                    "params:distributed",
                ],
                outputs="responses",
                name="answer_questions_node",
            ),
            node(
                nodes.judge_responses,
                inputs=["evaluation_plan", "test_questions", "responses"],
                outputs="verdicts",
                name="judge_responses_node",
            ),
            node(
                nodes.score_answers,
                inputs=["evaluation_plan", "test_questions", "responses", "verdicts"],
                outputs=["predictions", "variant_metrics_by_category"],
                name="score_answers_node",
            ),
            node(
                reporting.publish_variants,
                inputs=[
                    "evaluation_plan",
                    "predictions",
                    "variant_metrics_by_category",
                    "lora_adapter",
                ],
                outputs=["reliability_diagrams", "evaluation_runs", "evaluation_metrics"],
                name="publish_variants_node",
            ),
            node(
                nodes.compare_variants,
                inputs=["evaluation_plan", "predictions"],
                outputs=[
                    "comparison",
                    "comparison_models_comparison",
                    "comparison_metrics",
                    "comparison_models_metrics",
                    "comparison_summary",
                ],
                name="compare_variants_node",
            ),
            node(
                reporting.report_evaluation,
                inputs=[
                    "evaluation_plan",
                    "variant_metrics_by_category",
                    "comparison",
                    "comparison_models_comparison",
                    "training_completions",
                ],
                outputs=["table_1", "metrics_by_category", "evaluation_report"],
                name="report_evaluation_node",
            ),
        ],
        tags="evaluation",
    )
