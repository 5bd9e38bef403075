"""GRPO rewards on known completion/answer pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hle_reasoning.hle.judge.rewards import (
    CosineSimilarityReward,
    build_reward_functions,
    correctness_reward,
    final_answer,
    format_reward,
    load_sentence_encoder,
)

RESPONSE = "Explanation: 6x = 54, so x = 9.\nAnswer: 9\nConfidence: 80%"


def chat(text: str) -> list[dict]:
    """A completion as TRL passes it for conversational prompts."""
    return [{"role": "assistant", "content": text}]


class CountingEncoder:
    """The real MiniLM encoder, counting the texts it embeds."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.calls: list[list[str]] = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return self.encoder.encode(texts, **kwargs)


@pytest.fixture(scope="module")
def minilm():
    return load_sentence_encoder("all-MiniLM-L6-v2")


def test_cosine_is_the_mapped_similarity_of_the_final_answer(minilm):
    reward = CosineSimilarityReward(["9", "the Pythagorean theorem"], encoder=minilm)
    values = reward(
        completions=[chat(RESPONSE), chat("Answer: 9"), chat("Answer: purple elephant"), "9"],
        answer=["9", "9", "9", "9"],
    )
    # The final answer "9" against "9": cos = 1 -> (1 + 1) / 2 = 1, whatever the explanation says.
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert values[1] == pytest.approx(1.0, abs=1e-5)
    assert values[3] == pytest.approx(1.0, abs=1e-5)  # a plain-string completion without the format
    # Unrelated text: cos from MiniLM directly, mapped to [0, 1].
    emb = minilm.encode(["purple elephant", "9"], convert_to_tensor=True, normalize_embeddings=True)
    expected = (float(emb[0] @ emb[1]) + 1) / 2
    assert values[2] == pytest.approx(expected, abs=1e-5)
    assert 0.0 <= values[2] < 0.9


def test_cosine_prefers_the_closer_answer(minilm):
    reward = CosineSimilarityReward(["the Pythagorean theorem"], encoder=minilm)
    close, far = reward(
        completions=[chat("Answer: Pythagoras' theorem"), chat("Answer: a red bicycle")],
        answer=["the Pythagorean theorem"] * 2,
    )
    assert close > far
    assert 0.0 <= far < close <= 1.0


def test_reference_answers_are_embedded_once(minilm):
    counting = CountingEncoder(minilm)
    answers = ["9", "C", "\\frac{4}{9}", "9"]
    reward = CosineSimilarityReward(answers, encoder=counting, batch_size=2)
    assert counting.calls == [["9", "C", "\\frac{4}{9}"]]  # unique answers, once
    reward(completions=[chat("Answer: 9"), chat("Answer: C")], answer=["9", "C"])
    reward(completions=[chat("Answer: 4")], answer=["\\frac{4}{9}"])
    # Each call embeds only its completions' final answers, in one batch.
    assert counting.calls[1:] == [["9", "C"], ["4"]]


def test_final_answer_falls_back_to_the_whole_completion():
    assert final_answer(RESPONSE) == "9"
    assert final_answer("  just some text  ") == "just some text"


def test_correctness_uses_the_evaluation_judge():
    values = correctness_reward(
        completions=[
            chat(RESPONSE),
            chat("Answer: 10"),
            chat("Answer: C"),
            chat("Answer: D"),
            chat("9"),
        ],
        answer=["9", "9", "C", "C", "9"],
        answer_type=["exactMatch", "exactMatch", "multipleChoice", "multipleChoice", "exactMatch"],
    )
    assert values == [1.0, 0.0, 1.0, 0.0, 0.0]  # no "Answer:" line: not correct


def test_format_counts_the_answer_and_confidence_lines():
    values = format_reward(
        completions=[chat(RESPONSE), chat("Answer: 9"), chat("Confidence: 50%"), chat("nine")]
    )
    assert values == [1.0, 0.5, 0.5, 0.0]


def test_build_reward_functions_keeps_order_weights_and_zero_weights():
    funcs, weights = build_reward_functions({"format": 0.0, "correctness": 0.5}, answers=["9"])
    assert [f.__name__ for f in funcs] == ["correctness", "format"]
    assert weights == [0.5, 0.0]
    with pytest.raises(ValueError, match=r"unknown reward\(s\) \['bleu'\]"):
        build_reward_functions({"bleu": 1.0}, answers=["9"])


def test_cosine_reward_through_build_uses_the_offline_minilm():
    funcs, weights = build_reward_functions({"cosine": 1.0}, answers=["42"])
    assert weights == [1.0] and funcs[0].__name__ == "cosine"
    (value,) = funcs[0](completions=[chat("Answer: 42")], answer=["42"])
    assert value == pytest.approx(1.0, abs=1e-5)
    assert isinstance(funcs[0]._answers["42"], torch.Tensor)


def test_the_reward_registry_and_the_rewards_block_name_the_same_rewards():
    """A reward added to REWARDS without its weight in training.rewards (or the reverse) would be
    unreachable from conf/ or fail at the first step: the two lists must agree, in order, and the
    training block takes exactly the registry's names (a new reward: a registry line and a conf
    line)."""
    import yaml

    from hle_reasoning.config import TrainingConfig, parse
    from hle_reasoning.hle.judge.rewards import REWARDS

    assert list(TrainingConfig().rewards) == list(REWARDS)
    _, problems = parse(TrainingConfig, {"rewards": {"cosin": 1.0}}, "training")
    assert problems == ["training.rewards.cosin: unknown key; did you mean cosine?"]
    with pytest.MonkeyPatch.context() as patch:  # a reward added to the registry is accepted
        patch.setitem(REWARDS, "brevity", REWARDS["format"])
        config, problems = parse(TrainingConfig, {"rewards": {"brevity": 1.0}}, "training")
        assert problems == [] and config.reward_weights == {"brevity": 1.0}
    conf = yaml.safe_load(
        (Path(__file__).parents[2] / "conf/base/parameters_training.yml").read_text()
    )
    assert list(conf["training"]["rewards"]) == list(REWARDS)
