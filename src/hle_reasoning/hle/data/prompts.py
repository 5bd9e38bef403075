"""The official HLE prompt (one system prompt, the question, its image) as chat messages, and the
question rendered through a model's own chat template.

Three things of the model's interface shape the prompt, decided here once for evaluation,
training and serving:

* the system prompt is a plain string: Llama 3.2 Vision's released template takes
  ``messages[0]['content']|trim`` and would render a list of parts as its Python repr;
* where the image goes (``image_position``): HLE's own request puts it after the question text,
  which is harmless for API models; Mllama is not early fusion, its cross-attention starts at
  ``<|image|>`` and "image will only attend to the subsequent text tokens" (Meta's
  vision_prompt_format.md), so ``auto`` puts it before the question for cross-attention models,
  as Meta's examples do, and after the text for the others;
* the template's date (``chat_template_date``): the released template writes
  "Today Date: <today>" into text-only prompts unless given ``date_string``; the configured date
  is always passed, so prompts never depend on the day of the run.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image

from hle_reasoning.hle.data.schema import has_image, load_image

# Verbatim from the official hle_eval/run_model_predictions.py.
SYSTEM_PROMPT = (
    "Your response should be in the following format:\n"
    "Explanation: {your explanation for your answer choice}\n"
    "Answer: {your chosen answer}\n"
    "Confidence: {your confidence score between 0% and 100% for your answer}"
)
# The released Llama 3.2 template's own fallback date (used when strftime_now is missing).
DEFAULT_CHAT_TEMPLATE_DATE = "26 Jul 2024"

SystemRole = Literal["auto", "system", "user"]
ImagePosition = Literal["auto", "before", "after"]
IMAGE_POSITIONS = ("auto", "before", "after")


def image_goes_first(image_position: str, cross_attention: bool) -> bool:
    """Whether the image part precedes the question text (``auto``: for cross-attention models)."""
    if image_position not in IMAGE_POSITIONS:
        raise ValueError(
            f"image_position must be 'auto', 'before' or 'after' (got {image_position!r})"
        )
    if image_position == "auto":
        return cross_attention
    return image_position == "before"


def build_messages(
    question: str,
    with_image: bool,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: SystemRole = "auto",
    plain: bool = False,
    image_first: bool = False,
) -> list[dict]:
    """Chat messages for one HLE question.

    The system prompt is always a string message (as the official code sends it); the question
    is a list of parts (text, and the image before it when ``image_first``, else after it, HLE's
    order), or one string when ``plain`` (text-only models' templates; a question with an image
    cannot be put so).

    ``system_role``: ``"system"`` sends the system prompt as a system message (the official
    code's default); ``"user"`` sends it as a first user message (the official code's path for
    models without system prompts); ``"auto"`` uses ``"system"`` for text questions and ``"user"``
    for image questions, because Llama 3.2 Vision's chat template refuses a system message
    together with an image ("Prompting with images is incompatible with system messages").
    """
    if system_role not in ("auto", "system", "user"):
        raise ValueError(f"system_role must be 'auto', 'system' or 'user' (got {system_role!r})")
    role = ("user" if with_image else "system") if system_role == "auto" else system_role
    if plain:
        if with_image:
            raise ValueError("a question with an image has no plain-text prompt")
        messages = [{"role": "user", "content": question}]
    else:
        content: list[dict] = [{"type": "text", "text": question}]
        if with_image:
            content.insert(0 if image_first else 1, {"type": "image"})
        messages = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": role, "content": system_prompt})
    return messages


def render_chat(processor: Any, messages: list[dict], date: str = DEFAULT_CHAT_TEMPLATE_DATE):
    """``messages`` rendered by the model's chat template, ending with the assistant header; the
    template's date is ``date`` (templates without one ignore it)."""
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, date_string=date
    )


def prompt_text(
    processor: Any,
    question: str,
    image: str,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: SystemRole = "auto",
    plain: bool = False,
    image_first: bool = True,
    date: str = DEFAULT_CHAT_TEMPLATE_DATE,
) -> str:
    """The question rendered by the model's own chat template, ending with the assistant header
    (``plain``: string contents, for text-only models)."""
    messages = build_messages(
        question, has_image(image), system_prompt, system_role, plain, image_first
    )
    return render_chat(processor, messages, date)


def prompt_images(image: str, question_id: object = None) -> list[Image.Image] | None:
    """The decoded image of a question as Mllama's processor wants it (``None`` without one);
    an image over ``max_image_pixels`` or undecodable raises ``HLEDataError`` naming the id."""
    return [load_image(image, question_id)] if has_image(image) else None
