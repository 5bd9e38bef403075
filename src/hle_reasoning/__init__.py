"""hle-reasoning: QLoRA + GRPO on Humanity's Last Exam with Llama 3.2 Vision, as a Kedro project."""

__version__ = "0.1.0"
