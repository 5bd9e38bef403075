"""The ``llm`` judge: HLE's official judge prompt sent to any OpenAI-compatible endpoint.

Reproduces ``extract_answer`` of hle_eval/run_judge_results.py (github.com/centerforaisafety/hle):
the same ``JUDGE_PROMPT``, one user message, structured output with the fields
``extracted_final_answer``, ``reasoning``, ``correct`` ("yes"/"no") and ``confidence`` (int),
``max_completion_tokens=4096``, judge model ``o3-mini-2025-01-31`` by default. Differences: the
official schema also has a field ``strict: Literal[True]`` that carries no information (left
out); transient errors are retried by the OpenAI client's own ``max_retries`` (the official
client retries once); a bad key, a refused model or request stops the judge at once
(:class:`JudgeConfigError`) rather than failing every question; a judgement that still fails
returns ``None`` and the question stays unjudged, out of the metrics (the official code skips
it and counts it as wrong), and the confidence is clamped to 0..100.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Literal

from hle_reasoning.hle.data.records import content_key
from hle_reasoning.hle.judge.rules import Verdict
from hle_reasoning.unreachable import is_connection_failure

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


if TYPE_CHECKING:
    from pydantic import BaseModel as ExtractedAnswer  # the class extracted_answer_model makes


@functools.cache
def extracted_answer_model() -> type[ExtractedAnswer]:
    """The official structured judgement (less its ``strict`` field), as the pydantic model the
    OpenAI client parses into. Made at first use: pydantic is the judge's dependency, and the
    modules that import this one (the configuration among them) must import without it, as on the
    GPU machine (benchmarks/gpu_machine/)."""
    from pydantic import BaseModel

    class ExtractedAnswer(BaseModel):
        """The official structured judgement (less its ``strict`` field)."""

        extracted_final_answer: str
        reasoning: str
        correct: Literal["yes", "no"]
        confidence: int

    return ExtractedAnswer


def __getattr__(name: str) -> Any:
    """``ExtractedAnswer``, made (and pydantic imported) only when asked for."""
    if name == "ExtractedAnswer":
        return extracted_answer_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class JudgeConfigError(ValueError):
    """The ``llm`` judge is selected but cannot be used as configured (a missing or rejected key,
    an unknown model, a request the endpoint refuses): the run stops with what to fix."""


def credential_problems(api_key: str | None, base_url: str | None) -> list[str]:
    """What stops the ``llm`` judge before any request, from its endpoint settings alone (the
    preflight and :class:`LLMJudge` both ask): api.openai.com without a key. A local endpoint
    needs none."""
    if api_key or base_url:
        return []
    return [
        "no API key is set: `export HLE_JUDGE_API_KEY=sk-...` (or OPENAI_API_KEY), or put "
        "api_key under hle_judge in conf/local/credentials.yml (see docs/evaluation.md); or set "
        "evaluation.judge.llm.base_url to a local OpenAI-compatible server. To judge offline "
        "instead: --params evaluation.judge.kind=rules"
    ]


def judge_prompt(question: str, response: str, correct_answer: str) -> str:
    return JUDGE_PROMPT.format(question=question, response=response, correct_answer=correct_answer)


def cache_key(model: str, base_url: str | None, prompt: str) -> str:
    """What a cached LLM verdict depends on: the judge model, the endpoint and the full prompt."""
    value = {"model": model, "base_url": base_url or "", "prompt": prompt}
    return content_key(value, 24, sort_keys=False)  # the order stored keys were made with


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

    ``base_url`` None means api.openai.com. Transient failures (timeouts, connection errors,
    HTTP 408/409/429/5xx) are retried by the OpenAI client itself, ``max_retries`` times with
    jittered exponential backoff, honouring ``Retry-After``. A judgement that does not parse is
    asked once more. HTTP 400/401/403/404 (a bad key, no permission, an unknown model, a refused
    request) raise :class:`JudgeConfigError` at once, and every later call raises it before any
    request: the run stops instead of counting failed judgements as answers.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_JUDGE_MODEL,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 5,
        timeout_s: float = 600.0,
        max_completion_tokens: int = 4096,
        unreachable_after: int = 3,
    ) -> None:
        from openai import OpenAI

        from hle_reasoning.unreachable import ConsecutiveFailures

        problems = credential_problems(api_key, base_url)
        if problems:
            raise JudgeConfigError(problems[0])
        api_key = api_key or "EMPTY"  # local OpenAI-compatible servers (vLLM, Ollama) ignore it
        self.model = model
        self.base_url = base_url
        self.max_completion_tokens = max_completion_tokens
        self.stopped: JudgeConfigError | None = None
        self.reachable = ConsecutiveFailures(
            limit=unreachable_after,
            what=f"LLM judge {model!r}",
            address=base_url or "https://api.openai.com/v1",
            parameter="evaluation.judge.llm.base_url",
            limit_parameter="evaluation.judge.llm.unreachable_after",
            then=" (or HLE_JUDGE_BASE_URL / hle_judge.base_url in conf/local/credentials.yml, "
            "which take precedence), then rerun `kedro run --pipelines evaluation`: verdicts "
            "judged so far are kept and only the rest are judged (or judge offline: --params "
            "evaluation.judge.kind=rules).",
        )
        self._client = OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def __repr__(self) -> str:
        return f"LLMJudge(model={self.model!r}, base_url={self.base_url!r})"

    def key(self, question: str, response: str, correct_answer: str) -> str:
        return cache_key(
            self.model, self.base_url, judge_prompt(question, response, correct_answer)
        )

    def judge(self, question: str, response: str, correct_answer: str) -> Verdict | None:
        """One judgement, or ``None`` when it failed (logged, without the key); raises
        :class:`JudgeConfigError` when the endpoint refuses the judge's configuration."""
        import openai
        from pydantic import ValidationError

        prompt = judge_prompt(question, response, correct_answer)
        for attempt in (1, 2):  # an unparsable judgement is asked once more
            if self.stopped is not None:
                raise self.stopped
            self.reachable.check()
            try:
                completion = self._client.chat.completions.parse(
                    model=self.model,
                    max_completion_tokens=self.max_completion_tokens,
                    messages=[{"role": "user", "content": prompt}],
                    response_format=extracted_answer_model(),
                )
            except _fatal_errors() as error:
                self.stopped = JudgeConfigError(self._what_to_fix(error))
                raise self.stopped from None
            except (ValidationError, ValueError, openai.LengthFinishReasonError) as error:
                problem = _describe_error(error)
            except (AttributeError, TypeError) as error:  # a reply of another shape (a page)
                problem = f"the reply is not a chat completion ({_describe_error(error)})"
                logger.warning("LLM judge %s, attempt %d: %s", self.model, attempt, problem)
                self.reachable.failed(error, "gave no usable reply")
                return None
            except openai.OpenAIError as error:  # transient, after the client's own retries
                logger.error("LLM judge %s failed: %s", self.model, _describe_error(error))
                if is_connection_failure(error):
                    self.reachable.failed(error)  # raises at evaluation.judge.llm.unreachable_after
                else:
                    self.reachable.succeeded()
                return None
            else:
                self.reachable.succeeded()
                choices = getattr(completion, "choices", None)
                message = getattr(choices[0], "message", None) if choices else None
                parsed = getattr(message, "parsed", None)
                if parsed is not None:
                    return to_verdict(parsed)
                problem = "the judge returned no parsable judgement"
            logger.warning("LLM judge %s, attempt %d: %s", self.model, attempt, problem)
        return None

    def _what_to_fix(self, error: Exception) -> str:
        status = getattr(error, "status_code", None)
        where = self.base_url or "https://api.openai.com/v1"
        detail = _describe_error(error)
        fixes = {
            401: "the endpoint rejected the API key: set a valid key in HLE_JUDGE_API_KEY (or "
            "OPENAI_API_KEY) or hle_judge.api_key in conf/local/credentials.yml",
            403: f"the API key may not use the judge model {self.model!r}: use a key with "
            "access to it, or another model (evaluation.judge.llm.model or HLE_JUDGE_MODEL)",
            404: f"the endpoint does not serve the judge model {self.model!r} (or the base URL "
            "is wrong): check evaluation.judge.llm.model / HLE_JUDGE_MODEL and "
            "evaluation.judge.llm.base_url / HLE_JUDGE_BASE_URL",
            400: f"the endpoint refused the request for {self.model!r}: check that the model "
            "supports structured output and evaluation.judge.llm.max_completion_tokens",
        }
        fix = fixes.get(status, "the endpoint refused the judge's configuration")
        return (
            f"LLM judge stopped at the first refused request ({where}, {detail}): {fix}; or "
            "judge offline with --params evaluation.judge.kind=rules. Verdicts judged so far are "
            "kept; a rerun judges only the rest."
        )


def _fatal_errors() -> tuple[type[Exception], ...]:
    import openai

    return (
        openai.AuthenticationError,
        openai.PermissionDeniedError,
        openai.NotFoundError,
        openai.BadRequestError,
    )


def _describe_error(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    text = f"{type(error).__name__}" + (f" HTTP {status}" if status else "")
    message = str(error).splitlines()[0][:200] if str(error) else ""
    # Endpoints echo request headers in some error bodies; never pass a bearer token on.
    if "Bearer" in message or "sk-" in message:
        message = "(error message withheld: it may contain credentials)"
    return f"{text}: {message}" if message else text
