import pandas as pd

from hle_reasoning.modeling.curves import history_frame, training_curves_figure


def test_history_frame_aligns_metrics_by_step():
    history = {
        "reward": [{"step": 1, "value": 0.5}, {"step": 2, "value": 0.7}],
        "kl": [{"step": 2, "value": 0.01}],
        "reward.cosine": [{"step": 1, "value": 0.5}, {"step": 2, "value": 0.7}],
    }
    frame = history_frame(history)
    assert frame["step"].tolist() == [1, 2]
    assert frame["reward"].tolist() == [0.5, 0.7]
    assert pd.isna(frame.loc[0, "kl"]) and frame.loc[1, "kl"] == 0.01


def test_training_curves_draw_every_logged_series():
    frame = history_frame(
        {
            "reward": [{"step": s, "value": s / 10} for s in range(1, 6)],
            "reward.cosine": [{"step": s, "value": s / 10} for s in range(1, 6)],
            "reward.format": [{"step": s, "value": 0.0} for s in range(1, 6)],
            "loss": [{"step": s, "value": 1.0 / s} for s in range(1, 6)],
        }
    )
    fig = training_curves_figure(frame, "t")
    titles = {ax.get_title(): ax for ax in fig.axes}
    assert len(titles["Reward"].lines) == 1
    assert sorted(line.get_label() for line in titles["Reward per function"].lines) == [
        "cosine",
        "format",
    ]
    assert list(titles["Loss"].lines[0].get_ydata()) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    # A metric that was not logged is said to be missing rather than drawn empty.
    assert any(t.get_text() == "not logged" for t in titles["KL to the reference"].texts)
