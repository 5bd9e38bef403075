"""The official HLE prompt: one system prompt, the question, and the image after the text; and the
question rendered through a model's own chat template."""

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

SystemRole = Literal["auto", "system", "user"]


def build_messages(
    question: str,
    with_image: bool,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: SystemRole = "auto",
    plain: bool = False,
) -> list[dict]:
    """Chat messages for one HLE question, in the structured form chat templates take.

    ``plain``: every message's content as one string, the form text-only models' chat templates
    take (a question with an image cannot be put so).

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
        if system_prompt:
            messages.insert(0, {"role": role, "content": system_prompt})
        return messages
    content: list[dict] = [{"type": "text", "text": question}]
    if with_image:
        content.append({"type": "image"})
    messages = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": role, "content": [{"type": "text", "text": system_prompt}]})
    return messages


def prompt_text(
    processor: Any,
    question: str,
    image: str,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: SystemRole = "auto",
    plain: bool = False,
) -> str:
    """The question rendered by the model's own chat template, ending with the assistant header
    (``plain``: string contents, for text-only models)."""
    messages = build_messages(question, has_image(image), system_prompt, system_role, plain)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_images(image: str, question_id: object = None) -> list[Image.Image] | None:
    """The decoded image of a question as Mllama's processor wants it (``None`` without one);
    an image over ``max_image_pixels`` or undecodable raises ``HLEDataError`` naming the id."""
    return [load_image(image, question_id)] if has_image(image) else None
