"""judge_agreement: LLM-judged responses (HLE's judged-file format) + the questions -> the rules
judge's agreement with the LLM judge, and the rows where they differ. Not part of the default
study: run it with ``kedro run --pipelines judge_agreement --params judged=FILE,hle_source=FILE``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.pipelines.judge_agreement import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                nodes.measure_judge_agreement,
                inputs=["judged_responses", "hle_questions", "params:evaluation"],
                outputs=["judge_agreement", "judge_disagreements", "judge_agreement_metrics"],
                name="measure_judge_agreement_node",
            )
        ],
        tags="judge_agreement",
    )
