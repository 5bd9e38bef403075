"""HLE's prompt as chat messages: a string system prompt for every role and family, the image
before or after the question, and the image position's ``auto`` rule."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT, build_messages, image_goes_first


@given(
    question=st.text(),
    with_image=st.booleans(),
    role=st.sampled_from(["auto", "system", "user"]),
    image_first=st.booleans(),
)
def test_the_system_prompt_is_a_string_and_the_image_where_asked(
    question, with_image, role, image_first
):
    messages = build_messages(question, with_image, system_role=role, image_first=image_first)
    assert messages[0]["content"] == SYSTEM_PROMPT  # a string, never a list of parts
    expected_role = ("user" if with_image else "system") if role == "auto" else role
    assert messages[0]["role"] == expected_role
    parts = messages[-1]["content"]
    text = {"type": "text", "text": question}
    if not with_image:
        assert parts == [text]
    elif image_first:
        assert parts == [{"type": "image"}, text]
    else:
        assert parts == [text, {"type": "image"}]


def test_plain_messages_are_strings():
    assert build_messages("Q?", False, plain=True) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Q?"},
    ]
    with pytest.raises(ValueError, match="no plain-text prompt"):
        build_messages("Q?", True, plain=True)


def test_auto_puts_the_image_first_for_cross_attention_models_only():
    assert image_goes_first("auto", cross_attention=True)
    assert not image_goes_first("auto", cross_attention=False)
    assert image_goes_first("before", cross_attention=False)
    assert not image_goes_first("after", cross_attention=True)
    with pytest.raises(ValueError, match="image_position must be"):
        image_goes_first("middle", cross_attention=True)
