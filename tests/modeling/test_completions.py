"""The completions table: rewards and advantages as TRL computes them, the no-signal figures and
warning, the MLflow table, the report's section."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hle_reasoning.config import ModelConfig, TrainingConfig
from hle_reasoning.modeling import completions
from hle_reasoning.modeling.training import train_grpo
from tests.modeling.test_training import with_changes

EOS, PAD = 9, 0


def call(rewards: dict[int, list[float]], last_tokens: list[int]) -> dict:
    n = len(last_tokens)
    return {
        "id": [f"q{i // 2}" for i in range(n)],
        "has_image": [i < 2 for i in range(n)],
        "prompt": ["p"] * n,
        "completion": [f"c{i}" for i in range(n)],
        "completion_tokens": [4] * n,
        "last_token": last_tokens,
        "rewards": rewards,
    }


def rows(calls, scale="group", weights=(1.0,), names=("cosine",), generations=2):
    return completions.score_rows(
        calls,
        reward_names=list(names),
        weights=list(weights),
        num_generations=generations,
        scale_rewards=scale,
        end_token_ids=[EOS, PAD],
        step=3,
    )


def test_two_completions_get_plus_minus_0707_whatever_the_gap_under_group_scaling():
    scored = rows([call({0: [0.30, 0.50, 0.2, 0.9]}, [EOS, 5, PAD, 5])])
    assert [round(r["advantage"], 3) for r in scored] == [-0.707, 0.707, -0.707, 0.707]
    assert [r["cut"] for r in scored] == [False, True, False, True]
    assert [r["group"] for r in scored] == [0, 0, 1, 1]
    assert scored[0]["reward_cosine"] == 0.30 and scored[0]["step"] == 3
    assert completions.step_figures(scored) == {"no_signal_group_share": 0.0, "cut_share": 0.5}


def test_none_keeps_the_gap_and_batch_divides_by_the_batch_std():
    rewards = [0.2, 0.6, 0.5, 0.5]
    none = rows([call({0: rewards}, [EOS] * 4)], scale="none")
    assert [round(r["advantage"], 6) for r in none] == [-0.2, 0.2, 0.0, 0.0]
    batch = rows([call({0: rewards}, [EOS] * 4)], scale="batch")
    std = pd.Series(rewards).std()  # Bessel's, over the whole batch (TRL's nanstd)
    assert batch[0]["advantage"] == pytest.approx(-0.2 / (std + 1e-4))
    # The second group's rewards are equal: no signal, whatever the scaling.
    assert [r["no_signal"] for r in batch] == [False, False, True, True]


def test_weighted_reward_skips_a_reward_that_does_not_apply_and_unscorable_rows_get_0():
    scored = rows(
        [call({0: [1.0, 0.0, math.nan, math.nan], 1: [0.5, 0.5, math.nan, math.nan]}, [EOS] * 4)],
        weights=(1.0, 2.0),
        names=("correctness", "format"),
    )
    assert [r["reward"] for r in scored[:2]] == [2.0, 1.0]
    assert math.isnan(scored[2]["reward"]) and scored[2]["advantage"] == 0.0
    assert scored[2]["no_signal"]


@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=12).filter(
        lambda v: len(v) % 2 == 0
    ),
    st.sampled_from(["group", "batch", "none"]),
)
def test_advantages_sum_to_zero_in_every_group(rewards, scale):
    scored = rows([call({0: rewards}, [EOS] * len(rewards))], scale=scale)
    for g in range(0, len(rewards), 2):
        assert abs(scored[g]["advantage"] + scored[g + 1]["advantage"]) < 1e-6


def test_gathered_calls_keep_rank_order():
    rank0 = [call({0: [0.1, 0.2]}, [EOS, EOS])]
    rank1 = [call({0: [0.3, 0.4]}, [5, 5])]
    merged = completions.merge_calls([rank0, rank1])
    assert merged[0]["rewards"] == {0: [0.1, 0.2, 0.3, 0.4]}
    assert merged[0]["last_token"] == [EOS, EOS, 5, 5]


@given(st.text(max_size=300), st.integers(4, 200), st.sampled_from(["start", "end"]))
def test_shorten_keeps_one_end_within_the_limit(text, limit, keep):
    short, flat = completions.shorten(text, limit, keep), " ".join(text.split())
    assert len(short) <= limit and "\n" not in short
    if len(flat) <= limit:
        assert short == flat
    elif keep == "start":
        assert flat.startswith(short.removesuffix("..."))
    else:
        assert flat.endswith(short.removeprefix("..."))


def test_the_report_shows_the_first_and_last_step_with_table_syntax_escaped():
    frame = completions.table_frame(
        [
            {
                "step": s,
                "id": "q|1",
                "has_image": True,
                "prompt": "What is `x`?",
                "completion": "a | b\nc",
                "completion_tokens": 4,
                "cut": True,
                "reward": 0.5,
                "advantage": -0.7071,
                "group": 0,
                "no_signal": False,
                "reward_cosine": 0.5,
            }
            for s in (1, 1, 1, 2, 3)
        ],  # fmt: skip
        ["cosine"],
    )
    text = completions.report_markdown(frame, per_step=2)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| 1", "| 1", "| 3"]
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    assert "-0.707" in lines[1] and "a \\| b c" in lines[1] and "What is \\`x\\`?" in lines[1]
    assert completions.report_markdown(frame.iloc[:0]) == ""


@pytest.mark.slow
def test_a_run_whose_rewards_never_vary_says_so_and_names_the_cause(
    tiny_dir, math_questions, model_params, training_params, tmp_path, mlflow_store, caplog
):
    """The tiny model never answers correctly and its completions are cut at 4 tokens: under
    correctness alone every reward is 0, every group is signal-free, and the run says why."""
    params = with_changes(
        training_params,
        **{
            "checkpoints.dir": str(tmp_path / "checkpoints"),
            "max_steps": 3,
            "grpo.max_completion_length": 4,
            "rewards": {"cosine": None, "correctness": 1.0, "format": 0.0},
            "completions.rows_per_step": 3,
        },
    )
    fp32 = ModelConfig.from_params(dict(model_params, quantization={"enabled": False}))
    with caplog.at_level(logging.WARNING), mlflow_store.start_run() as run:
        result = train_grpo(
            str(tiny_dir), math_questions.iloc[:4], fp32, TrainingConfig.from_params(params)
        )
    warnings = [r.getMessage() for r in caplog.records if "learning nothing" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not at every step
    assert "3 of the 3 steps" not in warnings[0]  # said as soon as it passed the share: step 2
    assert "training.grpo.max_completion_length" in warnings[0]
    assert (
        "Every reward was 0" in warnings[0] and "cut at the length limit (4 tokens)" in warnings[0]
    )
    table = result.completions
    assert list(table["step"]) == [1, 1, 1, 2, 2, 2, 3, 3, 3]  # the first 3 rows of each step
    assert (table["reward"] == 0).all() and (table["advantage"] == 0).all() and table["cut"].all()
    assert {"reward_correctness", "reward_format"} <= set(table.columns)
    questions = math_questions.iloc[:4]
    with_image = dict(zip(questions["id"].astype(str), questions["image"] != "", strict=True))
    assert list(table["has_image"]) == [with_image[i] for i in table["id"]]
    assert table["has_image"].any()  # Mllama's trainer: image questions are among them
    # Our figures are TRL's own, step by step.
    history = result.history
    for ours, trl in (("no_signal_group_share", "frac_reward_zero_std"),
                      ("cut_share", "completion_clipped_ratio")):  # fmt: skip
        assert [p["value"] for p in history[ours]] == [p["value"] for p in history[trl]]
    assert result.summary["no_signal_steps"] == 3 and result.summary["mean_cut_share"] == 1.0
    # Live in MLflow: the metric at each step, and the table's 9 rows.
    client = mlflow_store.MlflowClient()
    steps = client.get_metric_history(run.info.run_id, "training.no_signal_group_share")
    assert [(m.step, m.value) for m in steps] == [(1, 1.0), (2, 1.0), (3, 1.0)]
    logged = mlflow_store.load_table(completions.ARTIFACT_FILE, run_ids=[run.info.run_id])
    assert list(logged["step"]) == list(table["step"])
    assert list(logged["id"]) == list(table["id"])
