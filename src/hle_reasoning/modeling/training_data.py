"""The training questions as TRL's GRPO rows (``training_dataset``): the chat prompt HLE's
evaluation would send, the question's image, and what the rewards read (answer, answer type, id).
"""

from __future__ import annotations

import pandas as pd

from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT, build_messages
from hle_reasoning.hle.data.schema import has_image, load_image


def training_dataset(
    questions: pd.DataFrame,
    system_prompt: str = SYSTEM_PROMPT,
    system_role: str = "auto",
    plain: bool = False,
    image_first: bool = True,
):
    """HLE questions as TRL rows: chat ``prompt``, ``images`` (0 or 1 PIL image) and the answer.

    ``answer``, ``answer_type`` and ``id`` reach the reward functions as keyword arguments.
    ``plain``: string message contents and no ``images`` column (a text-only model's rows).
    Otherwise every content is a list of parts, as TRL's VLM path wants them (a string content
    of the first user message would receive TRL's image placeholders); the trainer renders
    text-only contents, the system prompt among them, as strings again
    (``grpo.text_contents_as_strings``). ``image_first``: the image before the question text.
    """
    import datasets

    if questions.empty:
        raise ValueError("focus_train has no questions: nothing to train on.")
    rows = []
    for q in questions.itertuples(index=False):
        with_image = has_image(q.image)
        messages = build_messages(
            q.question, with_image, system_prompt, system_role, plain, image_first
        )
        if not plain:
            messages = [
                {**m, "content": [{"type": "text", "text": m["content"]}]}
                if isinstance(m["content"], str)
                else m
                for m in messages
            ]
        row = {
            "prompt": messages,
            "answer": str(q.answer),
            "answer_type": str(q.answer_type),
            "id": str(q.id),
        }
        if not plain:
            row["images"] = [load_image(q.image, q.id)] if with_image else []
        rows.append(row)
    return datasets.Dataset.from_list(rows)
