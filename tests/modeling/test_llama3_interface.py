"""The tiny model speaks Llama 3.2 Vision's real interface: Meta's tokenizer, the released chat
template and image processor settings, checked against Meta's own reference code
(``llama_models``: ``Tokenizer``, ``ChatFormat.encode_dialog_prompt``) on the bundled sample and
on the real HLE questions of ``../shared/anchors/hle`` (skipped when absent).

Documented differences from ``ChatFormat``: ChatFormat writes no date lines itself, so the
reference dialog's system message starts with the template's "Cutting Knowledge Date" and
"Today Date" lines (the configured ``chat_template_date``); and the released HF tokenizer puts
``<|image|>`` at 128256 where Meta's native file has it at 128011 (compared after mapping).
"""

from __future__ import annotations

import base64

import pytest

from hle_reasoning.hle.data.prompts import (
    DEFAULT_CHAT_TEMPLATE_DATE,
    SYSTEM_PROMPT,
    build_messages,
    render_chat,
)
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.modeling import llama3_tokenizer
from hle_reasoning.modeling.models import build_tiny_processor

META_IMAGE_ID = 128011


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


@pytest.fixture(scope="module")
def meta():
    from llama_models.llama3.chat_format import ChatFormat
    from llama_models.llama3.tokenizer import Tokenizer

    tokenizer = Tokenizer(llama3_tokenizer.tokenizer_model_file())
    return tokenizer, ChatFormat(tokenizer)


def _image_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def meta_prompt_ids(chat_format, question: str, image: str, date: str) -> list[int]:
    """Meta's reference encoding of the project's dialog (HLE's system prompt, the question)."""
    from llama_models.datatypes import RawMediaItem, RawMessage, RawTextItem

    if has_image(image):  # no system message beside an image: HLE's prompt as a first user turn
        dialog = [
            RawMessage(role="user", content=SYSTEM_PROMPT),
            RawMessage(
                role="user",
                content=[RawMediaItem(data=_image_bytes(image)), RawTextItem(text=question)],
            ),
        ]
    else:
        system = f"Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n{SYSTEM_PROMPT}"
        dialog = [
            RawMessage(role="system", content=system),
            RawMessage(role="user", content=question),
        ]
    tokens = chat_format.encode_dialog_prompt(dialog).tokens
    return [llama3_tokenizer.IMAGE_TOKEN_ID if t == META_IMAGE_ID else t for t in tokens]


def project_prompt_ids(processor, question: str, image: str, date: str) -> list[int]:
    messages = build_messages(question, has_image(image), image_first=True)
    text = render_chat(processor, messages, date)
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def differences(processor, chat_format, questions, date=DEFAULT_CHAT_TEMPLATE_DATE) -> list[str]:
    return [
        str(q.id)
        for q in questions.itertuples()
        if project_prompt_ids(processor, q.question, q.image, date)
        != meta_prompt_ids(chat_format, q.question, q.image, date)
    ]


def test_tokenizer_is_metas_with_the_released_special_tokens(processor, meta, sample_questions):
    tokenizer, _ = meta
    ours = processor.tokenizer
    texts = sample_questions["question"].tolist() + sample_questions["answer"].tolist()
    assert [ours(t, add_special_tokens=False)["input_ids"] for t in texts] == [
        tokenizer.encode(t, bos=False, eos=False) for t in texts
    ]
    assert len(ours) == 128_257
    assert ours.convert_tokens_to_ids("<|image|>") == 128_256  # the config's image_token_index
    for name in ("<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>", "<|eom_id|>"):
        assert ours.convert_tokens_to_ids(name) == tokenizer.special_tokens[name]
    assert ours.convert_tokens_to_ids("<|reserved_special_token_247|>") == 128_255
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (128000, 128009, 128004)
    assert ours("x")["input_ids"][0] == 128000  # bos added, as the released tokenizer does


def test_prompts_equal_metas_chat_format_on_the_sample(processor, meta, sample_questions):
    _, chat_format = meta
    assert sample_questions["image"].map(has_image).sum() > 0
    assert differences(processor, chat_format, sample_questions) == []
    # The date is the configured one, not today's.
    q = sample_questions[~sample_questions["image"].map(has_image)].iloc[0]
    other = project_prompt_ids(processor, q.question, q.image, "01 Jan 2030")
    assert other != project_prompt_ids(processor, q.question, q.image, DEFAULT_CHAT_TEMPLATE_DATE)
    assert other == meta_prompt_ids(chat_format, q.question, q.image, "01 Jan 2030")


@pytest.mark.slow
def test_prompts_equal_metas_chat_format_on_real_hle_questions(processor, meta, real_questions):
    _, chat_format = meta
    with_image = int(real_questions["image"].map(has_image).sum())
    assert len(real_questions) == 595 and with_image == 53
    assert differences(processor, chat_format, real_questions) == []
    # The released image processing on the real image questions: 4 tiles of 560 pixels, and
    # the question's tokens, after <|image|>, attend the image.
    from hle_reasoning.hle.data.prompts import prompt_images

    for q in real_questions[real_questions["image"].map(has_image)].itertuples():
        text = render_chat(processor, build_messages(q.question, True, image_first=True))
        inputs = processor(
            text=[text],
            images=[prompt_images(q.image)],
            return_tensors="pt",
            add_special_tokens=False,
        )
        assert tuple(inputs["pixel_values"].shape) == (1, 1, 4, 3, 560, 560), q.id
        ids = inputs["input_ids"][0].tolist()
        sees = inputs["cross_attention_mask"][0, :, 0].any(-1)
        first = ids.index(llama3_tokenizer.IMAGE_TOKEN_ID)
        assert not sees[:first].any() and sees[first:].all(), q.id


def test_released_template_behaviour(processor):
    """The released template's own behaviour, which the hand-written one hid."""
    question = "Compute 2+2."
    # A list-of-parts system message is rendered as its Python repr (the defect build_messages
    # avoids by sending a string).
    as_list = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "text", "text": question}]},
    ]
    assert "[{'type': 'text', 'text': 'Your response" in render_chat(processor, as_list)
    text = render_chat(processor, build_messages(question, False))
    assert "[{" not in text and f"\n\n{SYSTEM_PROMPT}<|eot_id|>" in text
    assert f"Today Date: {DEFAULT_CHAT_TEMPLATE_DATE}\n" in text
    # A system message beside an image is refused.
    with pytest.raises(Exception, match="incompatible with system messages"):
        render_chat(processor, build_messages(question, True, system_role="system"))
    # <|image|> where the message puts it: before the question for Mllama by default.
    before = render_chat(processor, build_messages(question, True, image_first=True))
    after = render_chat(processor, build_messages(question, True, image_first=False))
    assert f"<|image|>{question}<|eot_id|>" in before
    assert f"{question}<|image|><|eot_id|>" in after
    assert "Today Date" not in before  # no system turn beside an image


def test_image_processor_has_the_released_settings(processor, sample_questions):
    from hle_reasoning.hle.data.prompts import prompt_images

    image_processor = processor.image_processor
    assert image_processor.size == {"height": 560, "width": 560}
    assert image_processor.max_image_tiles == 4
    assert list(image_processor.image_mean) == [0.48145466, 0.4578275, 0.40821073]
    assert list(image_processor.image_std) == [0.26862954, 0.26130258, 0.27577711]
    q = sample_questions[sample_questions["image"].map(has_image)].iloc[0]
    text = render_chat(processor, build_messages(q.question, True, image_first=True))
    inputs = processor(
        text=[text], images=[prompt_images(q.image)], return_tensors="pt", add_special_tokens=False
    )
    batch, images, tiles, channels, height, width = inputs["pixel_values"].shape
    assert (batch, images, tiles, channels, height, width) == (1, 1, 4, 3, 560, 560)
    assert tuple(inputs["aspect_ratio_ids"].shape) == (1, 1)
    assert tuple(inputs["aspect_ratio_mask"].shape) == (1, 1, 4)
    # Every text token after <|image|> (the question) attends the image; none before it.
    mask = inputs["cross_attention_mask"][0, :, 0].any(-1)
    first = inputs["input_ids"][0].tolist().index(128_256)
    assert not mask[:first].any() and mask[first:].all()


def released_11b_config():
    """Llama-3.2-11B-Vision-Instruct's config: transformers' MllamaConfig defaults are the 11B
    shape; the released checkpoint's vision image_size is 560 (the default is 448)."""
    from transformers import MllamaConfig

    config = MllamaConfig(vision_config={"image_size": 560, "max_num_tiles": 4})
    assert config.text_config.vocab_size == 128_256
    assert config.image_token_index == llama3_tokenizer.IMAGE_TOKEN_ID
    return config


def test_lora_on_the_real_11b_architecture_counted_on_the_meta_device(training_params):
    """The released architecture, no weights: the family is Mllama and the proposal's LoRA
    adapts the language model's q/v projections only: 32 self-attention and 8 cross-attention
    layers, 80 modules, 2,129,920 trainable parameters, none in the vision tower."""
    import torch
    from peft import get_peft_model
    from transformers import MllamaForConditionalGeneration

    from hle_reasoning.config import TrainingConfig
    from hle_reasoning.modeling.families import MLLAMA, family_of_config
    from hle_reasoning.modeling.trl_mapping import lora_config

    config = released_11b_config()
    family = family_of_config(config)
    assert family.name == MLLAMA and family.cross_attention
    with torch.device("meta"):
        model = MllamaForConditionalGeneration(config)
        lora = lora_config(TrainingConfig.from_params(training_params).lora, family)
        peft_model = get_peft_model(model, lora)
    adapted = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and "." in n]
    adapted = [n for n in adapted if n.endswith(("q_proj", "v_proj"))]
    assert len(adapted) == 80
    assert all(".language_model." in n for n in adapted)
    cross = {n.split(".layers.")[1].split(".")[0] for n in adapted if "cross_attn" in n}
    assert cross == {str(i) for i in config.text_config.cross_attention_layers}
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == 2_129_920
