"""The ``llm`` judge: HLE's official judge prompt sent to any OpenAI-compatible endpoint.

Reproduces ``extract_answer`` of hle_eval/run_judge_results.py (github.com/centerforaisafety/hle):
the same ``JUDGE_PROMPT``, one user message, structured output with the fields
``extracted_final_answer``, ``reasoning``, ``correct`` ("yes"/"no") and ``confidence`` (int),
``max_completion_tokens=4096``, judge model ``o3-mini-2025-01-31`` by default. Differences: the
official schema also has a field ``strict: Literal[True]`` that carries no information (left
out); requests are retried with exponential backoff (the official client retries once); a
failed judgement returns ``None`` (the official code prints the error and skips the question,
which then counts as wrong), and the confidence is clamped to 0..100.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from hle_reasoning.hle.judging import Verdict

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_MODEL = "o3-mini-2025-01-31"

# Verbatim from the official hle_eval/run_judge_results.py.
JUDGE_PROMPT = r"""Judge whether the following [response] to [question] is correct or not based on the precise and unambiguous [correct_answer] below.

[question]: {question}

[response]: {response}

Your judgement must be in the format and criteria specified below:

extracted_final_answer: The final exact answer extracted from the [response]. Put the extracted answer as 'None' if there is no exact, final answer to extract from the response.

[correct_answer]: {correct_answer}

reasoning: Explain why the extracted_final_answer is correct or incorrect based on [correct_answer], focusing only on if there are meaningful differences between [correct_answer] and the extracted_final_answer. Do not comment on any background to the problem, do not attempt to solve the problem, do not argue for any answer different than [correct_answer], focus only on whether the answers match.

correct: Answer 'yes' if extracted_final_answer matches the [correct_answer] given above, or is within a small margin of error for numerical problems. Answer 'no' otherwise, i.e. if there if there is any inconsistency, ambiguity, non-equivalency, or if the extracted answer is incorrect.


confidence: The extracted confidence score between 0|\%| and 100|\%| from [response]. Put 100 if there is no confidence score available."""


class ExtractedAnswer(BaseModel):
    """The official structured judgement (less its ``strict`` field)."""

    extracted_final_answer: str
    reasoning: str
    correct: Literal["yes", "no"]
    confidence: int


class JudgeConfigError(ValueError):
    """The ``llm`` judge is selected but cannot be used as configured."""


def judge_prompt(question: str, response: str, correct_answer: str) -> str:
    return JUDGE_PROMPT.format(question=question, response=response, correct_answer=correct_answer)


def cache_key(model: str, base_url: str | None, prompt: str) -> str:
    """What a cached LLM verdict depends on: the judge model, the endpoint and the full prompt."""
    blob = json.dumps({"model": model, "base_url": base_url or "", "prompt": prompt})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def to_verdict(parsed: ExtractedAnswer) -> Verdict:
    """An LLM judgement as a :class:`Verdict` (``method="llm"``)."""
    extracted = parsed.extracted_final_answer.strip()
    return Verdict(
        correct=parsed.correct == "yes",
        extracted_answer=None if extracted in ("", "None") else extracted,
        confidence=max(0, min(100, int(parsed.confidence))),
        reason=parsed.reasoning.strip(),
        method="llm",
    )


class LLMJudge:
    """Judges responses through an OpenAI-compatible chat-completions endpoint.

    ``base_url`` None means api.openai.com. Requests that fail (connection errors, HTTP errors,
    unparsable output) are retried ``max_retries`` times, waiting ``backoff_s * 2**attempt``
    seconds (at most ``max_backoff_s``) in between.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_JUDGE_MODEL,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 5,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 600.0,
        max_completion_tokens: int = 4096,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from openai import OpenAI

        if not api_key:
            if base_url is None:
                raise JudgeConfigError(
                    "the llm judge needs an API key: set HLE_JUDGE_API_KEY (or OPENAI_API_KEY), "
                    "or put api_key under hle_judge in conf/local/credentials.yml (see README, "
                    "Evaluation); or use evaluation.judge.kind: rules"
                )
            api_key = "EMPTY"  # local OpenAI-compatible servers (vLLM, Ollama) ignore it
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_completion_tokens = max_completion_tokens
        self._sleep = sleep
        self._client = OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return f"LLMJudge(model={self.model!r}, base_url={self.base_url!r})"

    def key(self, question: str, response: str, correct_answer: str) -> str:
        return cache_key(
            self.model, self.base_url, judge_prompt(question, response, correct_answer)
        )

    def judge(self, question: str, response: str, correct_answer: str) -> Verdict | None:
        """One judgement, or ``None`` when every attempt failed (logged, without the key)."""
        prompt = judge_prompt(question, response, correct_answer)
        for attempt in range(self.max_retries + 1):
            try:
                completion = self._client.chat.completions.parse(
                    model=self.model,
                    max_completion_tokens=self.max_completion_tokens,
                    messages=[{"role": "user", "content": prompt}],
                    response_format=ExtractedAnswer,
                )
                parsed = completion.choices[0].message.parsed
                if parsed is None:
                    raise ValueError("the judge returned no parsable judgement")
                return to_verdict(parsed)
            except Exception as error:  # network, HTTP status, validation: all retried
                if attempt == self.max_retries:
                    logger.error(
                        "LLM judge %s failed after %d attempt(s): %s",
                        self.model,
                        attempt + 1,
                        _describe_error(error),
                    )
                    return None
                wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                logger.warning(
                    "LLM judge %s: attempt %d failed (%s); retrying in %.1fs",
                    self.model,
                    attempt + 1,
                    _describe_error(error),
                    wait,
                )
                self._sleep(wait)
        return None


def _describe_error(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    text = f"{type(error).__name__}" + (f" HTTP {status}" if status else "")
    message = str(error).splitlines()[0][:200] if str(error) else ""
    # Endpoints echo request headers in some error bodies; never pass a bearer token on.
    if "Bearer" in message or "sk-" in message:
        message = "(error message withheld: it may contain credentials)"
    return f"{text}: {message}" if message else text
