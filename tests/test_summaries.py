"""The closing summary reads the typed summaries the nodes return, whatever their datasets' names."""

from __future__ import annotations

import math

from hle_reasoning.hooks import StudySummaryHook
from hle_reasoning.summaries import TrainingSummary, VariantRun


def training_summary(**changes) -> TrainingSummary:
    summary = {
        "steps": 26,
        "mean_step_time_s": 0.256,
        "final_reward": 0.5891,
        "memory": {"eq6": {"total_gb": 1.5012}, "measured": {"peak_rss_gb": 1.0311}},
    }
    return TrainingSummary({**summary, **changes})


def test_the_summary_is_found_by_type_under_any_output_name():
    hook = StudySummaryHook()
    hook.before_pipeline_run({}, None, None)
    hook.after_node_run(
        None, None, {}, {"a_renamed_summary": training_summary(), "x": {"steps": 3}}
    )
    for variant, accuracy, judged in (("finetuned", 12.5, 70.0), ("baseline", 0.0, 73.0)):
        run = VariantRun(
            variant=variant,
            metrics={
                "n": judged,
                "judged": judged,
                "answered": 73.0,
                "accuracy": accuracy,
                "accuracy_ci": 1.234,
                "calibration_error": math.nan,
                "calibration_error_all_bins": 87.5,
                "brier_score": 0.8125,
                # An llm-judged variant carries the rules judge's agreement with it.
                **(
                    {
                        "rules_agreement": 90.0,
                        "rules_false_accepts": 1.0,
                        "rules_false_rejects": 6.0,
                    }
                    if variant == "finetuned"
                    else {}
                ),
            },
        )
        hook.after_node_run(None, None, {}, {f"some.{variant}.name": run})
    lines = hook.headline_lines()
    assert lines[0] == (
        "  training: 26 GRPO steps, 0.26 s/step, final reward 0.589, peak memory 1.03 GB "
        "(eq. (6): 1.50 GB)"
    )
    signal = TrainingSummary(training_summary(), no_signal_steps=3, mean_cut_share=0.875)
    assert signal.headline().endswith(
        "; no learning signal in 3 of 26 steps, 88% of completions cut"
    )
    assert lines[1] == VariantRun.header()
    assert lines[1].split("  ")[-1].strip() == "brier score"  # a column per registered score
    baseline, finetuned = lines[2].split(), lines[3].split()
    assert baseline == ["baseline", "73", "/", "73", "0.00", "±", "1.23", "n/a", "87.50", "0.812"]
    assert finetuned == [
        "finetuned",
        "70",
        "/",
        "73",
        "12.50",
        "±",
        "1.23",
        "n/a",
        "87.50",
        "0.812",
    ]
    # The columns line up under their headings.
    assert {len(line) for line in lines[1:4]} == {len(lines[1])}
    # Unjudged answers are named, with what to do.
    assert lines[4:] == [
        "  finetuned: incomplete: rerun to judge the remaining 3",
        "  finetuned: the rules judge agrees with the LLM judge on 90.0% "
        "(1 false accepts, 6 false rejects)",
    ]


def test_nothing_typed_means_no_headline():
    hook = StudySummaryHook()
    hook.before_pipeline_run({}, None, None)
    hook.after_node_run(None, None, {}, {"training_summary": {"steps": 3}, "table": [1, 2]})
    assert hook.headline_lines() == []


def test_a_run_without_a_reward_or_a_gpu_prints_n_a():
    line = training_summary(final_reward=None, mean_step_time_s=None).headline()
    assert "n/a s/step" in line and "final reward n/a" in line


def test_the_training_headline_gives_the_resident_weights_estimate_beside_eq6():
    memory = {
        "eq6": {"total_gb": 7.0012},
        "resident_estimate": {"total_gb": 9.2881},
        "measured": {"peak_cuda_allocated_gb": 10.5, "peak_rss_gb": 3.0},
    }
    assert TrainingSummary({**training_summary(), "memory": memory}).headline() == (
        "training: 26 GRPO steps, 0.26 s/step, final reward 0.589, peak memory 10.50 GB "
        "(eq. (6): 7.00 GB; with the resident weights 9.29 GB)"
    )


def test_the_comparison_models_follow_the_two_variants_in_their_configured_order():
    hook = StudySummaryHook()
    hook.before_pipeline_run({}, None, None)
    names = ["GPT-4o", "finetuned", "baseline", "DeepSeek-R1"]  # as the node returns them
    runs = [VariantRun(variant=name, metrics={"judged": 9, "answered": 9}) for name in names]
    hook.after_node_run(None, None, {}, {"evaluation_runs": runs})
    lines = hook.headline_lines()
    assert [line.split()[0] for line in lines[1:]] == [
        "baseline",
        "finetuned",
        "GPT-4o",
        "DeepSeek-R1",
    ]
