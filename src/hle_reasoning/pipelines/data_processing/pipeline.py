"""data_processing: validated HLE questions -> statistics tables, Figure 1 and the split."""

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.pipelines.data_processing import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                nodes.split_questions,
                inputs=["hle_questions", "params:data_processing"],
                outputs=["hle_train", "hle_test", "split_sizes"],
                name="split_questions_node",
            ),
            node(
                nodes.select_focus,
                inputs=["hle_train", "hle_test", "params:data_processing.focus_categories"],
                outputs=["focus_train", "focus_test"],
                name="select_focus_node",
            ),
            node(
                nodes.report_leaks,
                inputs=["hle_train", "hle_test"],
                outputs="split_leaks",
                name="report_leaks_node",
            ),
            node(
                nodes.compute_statistics,
                inputs=["hle_questions", "hle_test", "tokenizer"],
                outputs="hle_statistics",
                name="compute_statistics_node",
            ),
            node(
                nodes.render_statistics_report,
                inputs=[
                    "hle_statistics",
                    "split_sizes",
                    "params:hle_source",
                    "params:model.name_or_path",
                ],
                outputs="hle_statistics_report",
                name="render_statistics_report_node",
            ),
            node(
                nodes.plot_category_counts,
                inputs=["hle_statistics", "params:hle_source"],
                outputs="figure_1_questions_per_category",
                name="plot_category_counts_node",
            ),
            node(
                nodes.statistics_metrics,
                inputs=["hle_statistics", "split_sizes", "split_leaks"],
                outputs="data_processing_metrics",
                name="statistics_metrics_node",
            ),
        ],
        tags="data_processing",
    )
