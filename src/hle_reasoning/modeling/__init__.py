"""Models for the study: loading (hub, local, the offline tiny Mllama), quantization, LoRA, GRPO."""
