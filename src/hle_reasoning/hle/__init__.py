"""Humanity's Last Exam as a library: schema, sampling, statistics, prompts, judging and metrics."""
