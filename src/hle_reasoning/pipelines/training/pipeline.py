"""training: base model -> QLoRA + GRPO on focus_train -> LoRA adapter, metrics, summary."""

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.pipelines.training import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                nodes.prepare_base_model,
                inputs=["params:model", "params:training"],
                outputs="base_model",
                name="prepare_base_model_node",
            ),
            node(
                nodes.train_grpo,
                inputs=[
                    "base_model",
                    "focus_train",
                    "params:model",
                    "params:training",
                    "params:distributed",
                ],
                outputs=[
                    "lora_adapter",
                    "training_metrics",
                    "training_summary",
                    "training_history",
                    "training_completions",
                ],
                name="train_grpo_node",
            ),
            node(
                nodes.plot_training_curves,
                inputs=["training_history", "training_summary"],
                outputs="training_curves",
                name="plot_training_curves_node",
            ),
        ],
        tags="training",
    )
