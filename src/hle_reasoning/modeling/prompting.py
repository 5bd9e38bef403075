"""Turning HLE rows into model inputs: chat-templated prompt text and the images that go with it."""

from __future__ import annotations

from typing import Any

from PIL import Image

from hle_reasoning.hle.prompts import SYSTEM_PROMPT, SystemRole, build_messages
from hle_reasoning.hle.schema import has_image, load_image


def prompt_text(
    processor: Any,
    question: str,
    image: str,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: SystemRole = "auto",
) -> str:
    """The question rendered by the model's own chat template, ending with the assistant header."""
    messages = build_messages(question, has_image(image), system_prompt, system_role)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_images(image: str) -> list[Image.Image] | None:
    """The decoded image of a question as Mllama's processor wants it (``None`` without one)."""
    return [load_image(image)] if has_image(image) else None
