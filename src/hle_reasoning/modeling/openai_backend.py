"""Answering HLE questions through an OpenAI-compatible server (vLLM, SGLang, ``transformers
serve``, a hosted API), with the request of HLE's own run_model_predictions.py.

The request: the official system prompt as a system message (or a first user message where
``system_role`` says so, e.g. for image questions to Llama 3.2 Vision), the question, the image
as a data-URI ``image_url`` part after the text, ``max_completion_tokens`` = the configured
budget, temperature 0 unless ``do_sample``; with a ``chat_template_date`` also
``chat_template_kwargs: {"date_string": <date>}`` (vLLM, SGLang and ``transformers serve`` pass it
to the chat template, as the local backend passes ``model.chat_template_date``, so a served prompt
never depends on the server's day; a managed engine always sends it, the ``openai`` backend where
``evaluation.answering.<variant>.chat_template_kwargs`` is true). The first question is asked alone, so a refused
key or an unknown model stops the run at the first request (:class:`EndpointConfigError`);
the rest go ``concurrency`` at a time, and each answer is yielded as soon as it arrives, so a
caller stores it at once and a killed run resumes where it stopped. Transient failures
(timeouts, connection errors, HTTP 408/409/429/5xx) are retried by the OpenAI client itself
(``max_retries``, honouring ``Retry-After``); an answer that still fails is left out (a rerun
asks it again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hle_reasoning.config.evaluation import AnsweringConfig, GenerationConfig
from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT, build_messages
from hle_reasoning.hle.data.records import content_key
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.unreachable import ConsecutiveFailures, is_connection_failure

logger = logging.getLogger(__name__)

RESPONSE_FIELDS = ("id", "response", "prompt_tokens", "response_tokens", "finished", "seconds")


class EndpointConfigError(ValueError):
    """The answering endpoint refuses the configuration (a bad key, an unknown model, a refused
    request): the run stops at the first request with what to fix."""


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask; the key stays out of the repr."""

    base_url: str
    model: str
    api_key: str | None = None

    def __repr__(self) -> str:
        key = "***" if self.api_key else None
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"


def request_messages(
    question: str, image: str, system_role: str = "auto", image_first: bool = False
) -> list[dict]:
    """HLE's chat messages for one question: the system prompt as a string, the image (a data
    URI) as an ``image_url`` part, after the text as HLE's request has it (``image_first``:
    before it)."""
    messages = build_messages(
        question, has_image(image), SYSTEM_PROMPT, system_role, image_first=image_first
    )
    for message in messages:
        if isinstance(message["content"], str):
            continue
        parts = []
        for part in message["content"]:
            if part["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": image}})
            else:
                parts.append(part)
        message["content"] = parts
    return messages


def sampling_arguments(config: GenerationConfig) -> dict[str, Any]:
    """The decoding part of the request: HLE's temperature 0 (greedy) unless ``do_sample``."""
    if not config.do_sample:
        return {"temperature": 0.0}
    return {"temperature": config.temperature, "top_p": config.top_p, "seed": config.seed}


def template_arguments(chat_template_date: str | None) -> dict[str, Any]:
    """The request's extra body: the chat template's date (``chat_template_kwargs.date_string``,
    what vLLM, SGLang and ``transformers serve`` hand to ``apply_chat_template``) when one is
    given, else nothing (a hosted API may refuse fields it does not know)."""
    if chat_template_date is None:
        return {}
    return {"chat_template_kwargs": {"date_string": chat_template_date}}


def endpoint_key(
    endpoint: Endpoint,
    config: GenerationConfig,
    answering: AnsweringConfig,
    image_first: bool = False,
    chat_template_date: str | None = None,
) -> str:
    """What a served answer depends on: the backend, the server, the served model, the decoding
    and the prompt (not the key, the concurrency or the retries). Answers stored under another
    key are asked again. The chat template's date is part of it only when it is sent."""
    payload = {
        "backend": "openai",
        "base_url": endpoint.base_url,
        "model": endpoint.model,
        "max_completion_tokens": config.max_new_tokens,
        "sampling": sampling_arguments(config),
        "system_role": config.system_role,
        "system_prompt": SYSTEM_PROMPT,
    }
    if image_first:  # HLE's order (image after the text) keeps the keys answers were stored under
        payload["image_first"] = True
    payload.update(template_arguments(chat_template_date))  # not sent: the keys stored before
    return content_key(payload, 16)


class EndpointAnswerer:
    """Asks one OpenAI-compatible endpoint HLE's questions."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: GenerationConfig,
        answering: AnsweringConfig,
        *,
        parameter: str = "evaluation.answering.<variant>",
        image_first: bool = False,
        chat_template_date: str | None = None,
    ) -> None:
        from openai import OpenAI

        self.endpoint = endpoint
        # The image part before the question text: a served Llama 3.2 Vision reads the question
        # only after its <|image|> (cross-attention; hle.data.prompts.image_goes_first).
        self.image_first = image_first
        # Sent as chat_template_kwargs.date_string (None: not sent, see template_arguments).
        self.chat_template_date = chat_template_date
        self.config = config
        self.answering = answering
        self.parameter = parameter  # the block that set model and base_url, for error messages
        self.reachable = ConsecutiveFailures(
            limit=answering.unreachable_after,
            what=f"answering with {endpoint.model!r}",
            address=endpoint.base_url,
            parameter=f"{parameter}.base_url",
            limit_parameter=f"{parameter}.unreachable_after",
            then=" (or its HLE_ANSWER_<NAME>_BASE_URL / credentials entry), then rerun `kedro "
            "run --pipelines evaluation`: answers stored so far are kept and only the rest are "
            "asked.",
        )
        self._client = OpenAI(
            api_key=endpoint.api_key or "EMPTY",  # local servers ignore the key
            base_url=endpoint.base_url,
            timeout=answering.timeout_s,
            max_retries=answering.max_retries,
        )

    def __repr__(self) -> str:
        return f"EndpointAnswerer({self.endpoint!r})"

    @property
    def key(self) -> str:
        """The ``generation_key`` of this answerer's answers (:func:`endpoint_key`)."""
        return endpoint_key(
            self.endpoint, self.config, self.answering, self.image_first, self.chat_template_date
        )

    @property
    def answered_by(self) -> str:
        return f"openai:{self.endpoint.model}"

    def answer(self, row: Any) -> dict[str, Any] | None:
        """One response record, or ``None`` when the request failed after the client's retries;
        raises :class:`EndpointConfigError` when the endpoint refuses the configuration."""
        import openai

        self.reachable.check()
        started = time.perf_counter()
        try:
            completion = self._client.chat.completions.create(
                model=self.endpoint.model,
                messages=request_messages(
                    row.question, row.image, self.config.system_role, self.image_first
                ),
                max_completion_tokens=self.config.max_new_tokens,
                extra_body=template_arguments(self.chat_template_date) or None,
                **sampling_arguments(self.config),
            )
        except (
            openai.AuthenticationError,
            openai.PermissionDeniedError,
            openai.NotFoundError,
            openai.BadRequestError,
        ) as error:
            raise EndpointConfigError(self._what_to_fix(error)) from None
        except openai.OpenAIError as error:
            logger.error("%s: question %s failed: %s", self.endpoint.model, row.id, _brief(error))
            if is_connection_failure(error):
                self.reachable.failed(error)  # raises at <parameter>.unreachable_after
            else:
                self.reachable.succeeded()
            return None
        except (AttributeError, TypeError, ValueError) as error:  # a reply of another shape
            completion = error
        record = reply_record(row.id, completion, time.perf_counter() - started)
        if record is None:
            what = f"{type(completion).__name__}: {str(completion)[:80]!r}"
            logger.error(
                "%s: question %s: the server's reply is not a chat completion (%s)",
                self.endpoint.model,
                row.id,
                what,
            )
            # A proxy's page or another API at base_url: stop as for a server that is down.
            self.reachable.failed(
                ValueError(f"not a chat completion: {what}"), "gave no usable reply"
            )
            return None
        self.reachable.succeeded()
        return record

    def answer_all(
        self, questions: pd.DataFrame, *, progress: bool = True, description: str = "answering"
    ) -> Iterator[pd.DataFrame]:
        """One single-row frame per answer, as answers arrive (the first question alone)."""
        from tqdm.auto import tqdm

        rows = list(questions.itertuples())
        if not rows:
            return
        bar = tqdm(total=len(rows), desc=description, unit="question", disable=not progress)
        failed = 0
        try:
            first = self.answer(rows[0])
            bar.update(1)
            if first is None:
                failed += 1
            else:
                yield pd.DataFrame([first], columns=list(RESPONSE_FIELDS))
            with ThreadPoolExecutor(max_workers=self.answering.concurrency) as pool:
                futures = [pool.submit(self.answer, row) for row in rows[1:]]
                try:
                    for future in as_completed(futures):
                        # An EndpointConfigError or EndpointUnreachableError stops here.
                        record = future.result()
                        bar.update(1)
                        if record is None:
                            failed += 1
                            continue
                        yield pd.DataFrame([record], columns=list(RESPONSE_FIELDS))
                finally:
                    for future in futures:
                        future.cancel()
        finally:
            bar.close()
        if failed:
            logger.warning(
                "%s: %d question(s) failed after %d retries each and are not answered; run again "
                "to ask only them",
                description,
                failed,
                self.answering.max_retries,
            )

    def _what_to_fix(self, error: Exception) -> str:
        status = getattr(error, "status_code", None)
        where, model = self.endpoint.base_url, self.endpoint.model
        fixes = {
            401: "the server rejected the API key: set it in HLE_ANSWER_<NAME>_API_KEY (or "
            "HLE_ANSWER_API_KEY / OPENAI_API_KEY) or under hle_answer.<name>.api_key in "
            "conf/local/credentials.yml",
            403: f"the API key may not use {model!r}: use a key with access to it",
            404: f"the server does not serve {model!r} (or the base URL is wrong): check "
            f"{self.parameter}.model and .base_url against the server's /v1/models",
            400: f"the server refused the request for {model!r}: check that it takes chat "
            "messages (with images for image questions) and evaluation.generation.max_new_tokens",
        }
        fix = fixes.get(status, "the server refused the answering configuration")
        return (
            f"answering stopped at the first refused request ({where}, {_brief(error)}): {fix}. "
            "Answers stored so far are kept; a rerun asks only the rest."
        )


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def reply_record(question_id: Any, completion: Any, seconds: float) -> dict[str, Any] | None:
    """The stored record of a chat-completion reply, or ``None`` when the reply has no message
    (not a chat completion: an HTML page, a list, no choices). A missing or odd ``usage`` is
    left out, text parts of a list ``content`` are joined."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        return None
    content = getattr(message, "content", None)
    if isinstance(content, list):  # content parts, as some servers return them
        content = "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(getattr(part, "text", ""))
            for part in content
        )
    if content is not None and not isinstance(content, str):
        return None
    usage = getattr(completion, "usage", None)
    return {
        "id": str(question_id),
        "response": (content or "").strip(),
        "prompt_tokens": _count(getattr(usage, "prompt_tokens", None)),
        "response_tokens": _count(getattr(usage, "completion_tokens", None)),
        "finished": getattr(choice, "finish_reason", None) == "stop",
        "seconds": seconds,
    }


def _brief(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    text = type(error).__name__ + (f" HTTP {status}" if status else "")
    message = str(error).splitlines()[0][:200] if str(error) else ""
    if "Bearer" in message or "sk-" in message:  # some servers echo request headers
        message = "(error message withheld: it may contain credentials)"
    return f"{text}: {message}" if message else text
