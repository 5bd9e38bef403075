"""judge_agreement: how far the offline rules judge is from an LLM judge, on LLM-judged responses."""

from hle_reasoning.pipelines.judge_agreement.pipeline import create_pipeline

__all__ = ["create_pipeline"]
