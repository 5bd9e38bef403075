"""MllamaGRPOTrainer on the tiny Llama 3.2 Vision: image prompts reach generation and every
log-prob pass, prompts are capped, and mixed image/text batches train."""

from __future__ import annotations

import copy

import pytest
import torch

from hle_reasoning.config import QuantizationConfig, TinyConfig, TrainingConfig
from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT, prompt_text
from hle_reasoning.hle.data.schema import load_image
from hle_reasoning.modeling.grpo import (
    MllamaGRPOConfig,
    MllamaGRPOTrainer,
    cross_attention_mask,
    extend_over_completion,
    truncate_prompt_ids,
)
from hle_reasoning.modeling.models import build_tiny_mllama, load_model, load_processor
from hle_reasoning.modeling.training_data import training_dataset
from hle_reasoning.modeling.trl_mapping import grpo_config, lora_config


def length_reward(completions, **_):
    """Any reward that differs between completions, so advantages are not all zero."""
    return [float(len(c[0]["content"])) for c in completions]


def make_trainer(
    model,
    processor,
    questions,
    training_params,
    tmp_path,
    reward=length_reward,
    lora=None,
    **overrides,
):
    training = copy.deepcopy(training_params)
    training["lora"].update(lora or {})
    training["prompt"].update(
        {k: overrides.pop(k) for k in list(overrides) if k in training["prompt"]}
    )
    training["grpo"].update(overrides)
    training = TrainingConfig.from_params(training)
    args = grpo_config(training, output_dir=tmp_path / "out", device="cpu", reward_weights=[1.0])
    args.disable_tqdm = True
    args.save_strategy = "no"
    dataset = training_dataset(questions)
    trainer = MllamaGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(training.lora),
    )
    return trainer, dataset


def generation_batch(trainer, dataset, rows):
    """One generation batch as the trainer builds it: every prompt num_generations times."""
    n = trainer.num_generations
    inputs = [dataset[i] for i in rows for _ in range(n)]
    torch.manual_seed(0)
    trainer.model.train()
    return trainer._generate_and_score_completions(inputs)


def direct_log_probs(model, processor, question, image, completion, temperature):
    """Per-token log-probs of ``completion`` from one plain forward of the processor's inputs."""
    text = prompt_text(processor, question, image)
    images = [[load_image(image)]] if image else None
    enc = processor(text=[text], images=images, add_special_tokens=False, return_tensors="pt")
    ids = torch.cat([enc["input_ids"], completion[None]], dim=1)
    kwargs = {}
    if images:
        # generate() extends the mask over new tokens by repeating the last prompt row.
        mask = enc["cross_attention_mask"]
        kwargs = {
            "pixel_values": enc["pixel_values"],
            "aspect_ratio_ids": enc["aspect_ratio_ids"],
            "aspect_ratio_mask": enc["aspect_ratio_mask"],
            "cross_attention_mask": torch.cat(
                [mask, mask[:, -1:].expand(-1, len(completion), -1, -1)], dim=1
            ),
        }
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits
    prompt_len = enc["input_ids"].size(1)
    logps = torch.log_softmax(logits[0, prompt_len - 1 : -1].float() / temperature, dim=-1)
    return enc["input_ids"][0], logps.gather(-1, completion[:, None])[:, 0]


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """One torch thread, as training.cpu_threads sets: two stall on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fp32_model(tiny_dir):
    return load_model(str(tiny_dir), quantization=None, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_processor(str(tiny_dir))


def test_cross_attention_mask_is_the_processors_on_left_padded_prompts(processor, math_questions):
    rows = math_questions.iloc[[0, len(math_questions) - 1, 1]]  # image, text, image
    texts = [prompt_text(processor, r.question, r.image) for r in rows.itertuples()]
    images = [[load_image(r.image)] if r.image else [] for r in rows.itertuples()]
    enc = processor(
        text=texts,
        images=images,
        add_special_tokens=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    lengths = enc["attention_mask"].sum(1)
    longest = int(lengths.max())
    # Left-pad each prompt as TRL does; the processor's own mask is for unpadded prompts.
    padded = torch.full((len(texts), longest), processor.tokenizer.pad_token_id)
    for row, n in enumerate(lengths.tolist()):
        padded[row, longest - n :] = enc["input_ids"][row, :n]
    ours = cross_attention_mask(padded, processor.image_token_id, enc["aspect_ratio_mask"])
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(ours[row, longest - n :], enc["cross_attention_mask"][row, :n])
        assert not ours[row, : longest - n].any()
    assert ours[0].any() and not ours[1].any()  # the text question sees no image
    extended = extend_over_completion(ours, 3)
    assert extended.shape[1] == longest + 3
    assert torch.equal(extended[:, -1], ours[:, -1])


def test_truncation_keeps_the_chosen_end():
    ids = list(range(10))
    assert truncate_prompt_ids(ids, 4, "left") == [6, 7, 8, 9]
    assert truncate_prompt_ids(ids, 4, "right") == [0, 1, 2, 3]
    assert truncate_prompt_ids(ids, None, "left") == ids
    assert truncate_prompt_ids(ids, 20, "right") == ids


def test_trainer_log_probs_match_a_direct_forward_for_image_prompts(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """fp32, no prompt cap: the trainer's log-probs of an image and a text prompt's completions
    (old/reference pass and loss pass) equal a plain forward of the processor's inputs."""
    questions = math_questions.iloc[[0, len(math_questions) - 1]]  # an image and a text question
    assert questions.iloc[0]["image"] and not questions.iloc[1]["image"]
    trainer, dataset = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        bf16=False,
        max_prompt_tokens=None,
        max_completion_length=12,
    )
    batch = generation_batch(trainer, dataset, [0, 1])
    assert batch["pixel_values"].shape[0] == 4 and "aspect_ratio_ids" in batch

    trainer.model.eval()  # LoRA dropout off; the adapter starts at zero, so policy == base
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        trainer_logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            ids,
            mask,
            batch["completion_ids"].size(1),
            pixel_values=batch["pixel_values"],
            aspect_ratio_ids=batch["aspect_ratio_ids"],
            aspect_ratio_mask=batch["aspect_ratio_mask"],
        )
    reference_logps = batch["ref_per_token_logps"]  # computed inside TRL's own flow

    without_image = []
    for row in range(4):
        q = questions.iloc[row // 2]
        completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()]
        prompt_ids, direct = direct_log_probs(
            trainer.model, processor, q["question"], q["image"], completion, trainer.temperature
        )
        # The trainer tokenized the same prompt (left-padded).
        assert (
            batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()
            == prompt_ids.tolist()
        )
        n = len(completion)
        torch.testing.assert_close(trainer_logps[row, :n], direct, atol=1e-5, rtol=0)
        torch.testing.assert_close(reference_logps[row, :n], direct, atol=1e-5, rtol=0)
        if q["image"]:
            _, blind = direct_log_probs(
                trainer.model, processor, q["question"], "", completion, trainer.temperature
            )
            without_image.append((blind[1:] - direct[1:]).abs().max().item())
    # The image changes the log-probs, so a trainer that dropped it would fail the checks above.
    assert min(without_image) > 1e-3

    # The loss pass sees the same inputs: policy == reference, so its KL is 0.
    trainer.model.eval()
    with torch.no_grad():
        trainer._compute_loss(trainer.model, batch)
    assert abs(trainer._metrics["eval"]["kl"][-1]) < 1e-6  # eval mode: "eval" metrics


def _prompt_text(processor, batch, row):
    ids = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()]
    return processor.tokenizer.decode(ids)


def test_prompts_cap_the_question_and_keep_the_system_prompt_and_the_image(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """The 32-token cap cuts a long image question's text only: the system prompt (a string, not
    the repr of a list of parts), the turn markup and <|image|>, before the question, stay."""
    questions = math_questions.iloc[[0, len(math_questions) - 1]].copy()
    long_question = "Let x be the number of primes below 10; " * 20 + "what is x squared?"
    questions.iloc[0, questions.columns.get_loc("question")] = long_question
    trainer, dataset = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        max_prompt_tokens=32,
        truncation_side="left",
        max_completion_length=4,
    )
    batch = generation_batch(trainer, dataset, [0, 1])
    image_rows = (batch["prompt_ids"] == processor.image_token_id).any(1)
    assert image_rows.tolist() == [True, True, False, False]
    tokenizer = processor.tokenizer
    kept = tokenizer.decode(tokenizer(long_question, add_special_tokens=False)["input_ids"][-32:])
    for row in (0, 2):
        text = _prompt_text(processor, batch, row)
        assert text.startswith("<|begin_of_text|>")
        assert SYSTEM_PROMPT + "<|eot_id|>" in text and "[{" not in text
    image_prompt = _prompt_text(processor, batch, 0)
    assert image_prompt.endswith(
        f"<|start_header_id|>user<|end_header_id|>\n\n<|image|>{kept}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # The text question is short: whole, after the template's pinned date.
    assert "Today Date: 26 Jul 2024\n\n" in _prompt_text(processor, batch, 2)
    assert questions.iloc[1]["question"] in _prompt_text(processor, batch, 2)


def test_a_mixed_batch_of_image_and_text_questions_trains(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """Two steps on a batch of 2 image and 2 text questions: the adapter of the image
    cross-attention layer learns, the vision tower is left alone."""
    questions = math_questions.iloc[[0, 1, len(math_questions) - 1, len(math_questions) - 2]]
    trainer, _ = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        batch_size=4,
        max_completion_length=6,
        learning_rate=1e-2,
        scale_rewards="batch",
    )
    trainer.args.max_steps = 2
    trainer.train()
    assert trainer.state.global_step == 2
    lora_b = {n: p for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert all("language_model" in n for n in lora_b)  # the vision tower is not adapted
    cross = [p for n, p in lora_b.items() if "cross_attn" in n]
    assert cross and all(p.abs().sum() > 0 for p in cross)


def marker_tokens(model, share: float = 0.2, seed: int = 0) -> set[int]:
    """The "marker" tokens: the fifth of the vocabulary the output layer scores highest along a
    random direction, so that one shift of the hidden state can favour them all."""
    weight = model.lm_head.weight.float()
    direction = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(seed))
    scores = weight @ direction
    return set(torch.topk(scores, int(share * len(scores))).indices.tolist())


def marker_mass(model, processor, questions, markers: set[int]) -> float:
    """Mean next-token probability of the marker tokens right after each prompt.

    The model stays in train mode (with LoRA dropout 0): on CPUs with AVX512-BF16, bitsandbytes
    0.50 repacks 4-bit weights at the first eval-mode forward, and backprop through repacked
    weights is silently wrong (its gemv_4bit kernel has no autograd).
    """
    index = torch.tensor(sorted(markers))
    masses = []
    for q in questions.itertuples():
        text = prompt_text(processor, q.question, q.image)
        images = [[load_image(q.image)]] if q.image else None
        enc = processor(text=[text], images=images, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0, -1].float()
        masses.append(torch.softmax(logits, -1)[index].sum().item())
    return sum(masses) / len(masses)


@pytest.fixture(scope="module")
def sharp_tiny_dir(tmp_path_factory, model_params):
    """The tiny Mllama with weights 10x the default scale (initializer_range 0.2): its next-token
    distributions are far from uniform, so a small LoRA can move them measurably."""
    tiny = copy.deepcopy(model_params["tiny"])
    tiny["text"]["initializer_range"] = 0.2
    model, processor = build_tiny_mllama(TinyConfig.from_params(tiny), seed=0)
    path = tmp_path_factory.mktemp("sharp_tiny")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.mark.slow
def test_grpo_through_lora_on_the_4bit_base_raises_the_rewarded_tokens_probability(
    sharp_tiny_dir, math_questions, model_params, training_params, tmp_path
):
    """The learning signal: rewarding marker tokens raises their probability within 8 steps,
    through LoRA on the 4-bit NF4 base, on image and text questions."""
    model = load_model(
        str(sharp_tiny_dir),
        quantization=QuantizationConfig.from_params(model_params["quantization"]),
        device="cpu",
    )
    assert getattr(model, "is_loaded_in_4bit", False)
    processor = load_processor(str(sharp_tiny_dir))
    markers = marker_tokens(model)

    def marker_reward(completion_ids, **_):
        return [sum(t in markers for t in ids) / max(len(ids), 1) for ids in completion_ids]

    questions = math_questions.iloc[[0, 1, len(math_questions) - 1, len(math_questions) - 2]]
    trainer, _ = make_trainer(
        model,
        processor,
        questions,
        training_params,
        tmp_path,
        reward=marker_reward,
        lora={"dropout": 0.0},
        batch_size=4,
        num_generations=8,
        max_completion_length=1,
        temperature=1.0,
        learning_rate=3e-2,
        scale_rewards="batch",
        beta=0.0,
        max_prompt_tokens=None,
    )
    trainer.model.train()
    before = marker_mass(trainer.model, processor, questions, markers)
    trainer.args.max_steps = 8
    trainer.train()
    trainer.model.train()
    after = marker_mass(trainer.model, processor, questions, markers)
    # With Llama 3's 128,256-token vocabulary the next-token distribution is flatter (entropy
    # about 10.5 nats) than with the 2,048-token stand-in: the rise is smaller (0.22 -> 0.33).
    assert after > before + 0.08, (before, after)


def test_generate_receives_the_processors_cross_attention_mask_for_left_padded_prompts(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """What generation is given, not only what comes out: the prefill forward of generate()
    gets, for every image row, the processor's cross-attention mask of its prompt shifted right
    by its left padding (zeros over the padding); text rows get no image inputs at all."""
    questions = math_questions.iloc[[0, 1, len(math_questions) - 1]]  # image, image, text
    trainer, dataset = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        bf16=False,
        max_prompt_tokens=None,
        max_completion_length=2,
    )
    trainer.pad_to_multiple_of = 16  # TRL pads generate()'s inputs so; the mask must follow
    expected = {}  # prompt token ids -> the processor's cross-attention mask (None: no image)
    for q in questions.itertuples():
        text = prompt_text(processor, q.question, q.image)
        images = [[load_image(q.image)]] if q.image else None
        enc = processor(text=[text], images=images, add_special_tokens=False, return_tensors="pt")
        expected[tuple(enc["input_ids"][0].tolist())] = (
            enc["cross_attention_mask"][0] if q.image else None
        )

    prefills = []

    def record(_module, _args, kwargs):
        # generate()'s forwards carry a cache; its first (prefill) one sees the whole prompt.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and kwargs["input_ids"].shape[1] > 1:
            prefills.append(dict(kwargs))

    handle = trainer.model.get_base_model().register_forward_pre_hook(record, with_kwargs=True)
    try:
        generation_batch(trainer, dataset, [0, 1, 2])
    finally:
        handle.remove()

    image_calls = [c for c in prefills if c.get("pixel_values") is not None]
    text_calls = [c for c in prefills if c.get("pixel_values") is None]
    assert len(image_calls) == 1 and len(text_calls) == 1
    assert text_calls[0].get("cross_attention_mask") is None
    call = image_calls[0]
    ids, attention, mask = call["input_ids"], call["attention_mask"], call["cross_attention_mask"]
    assert mask is not None and mask.shape[:2] == ids.shape  # (rows, prompt length, ...)
    assert ids.shape[1] % 16 == 0
    lengths = attention.sum(1).tolist()
    assert len(set(lengths)) > 1  # the two image prompts differ in length: one is left-padded
    for row, n in enumerate(lengths):
        pad = ids.shape[1] - n
        own = expected[tuple(ids[row, pad:].tolist())]
        assert own is not None and own.any()
        assert mask.shape[2:] == own.shape[1:]
        assert torch.equal(mask[row, pad:].cpu(), own.to(mask.dtype))
        assert not mask[row, :pad].any()


# --------------------------------------------------------------------------- hand-made masks
IMAGE = 99  # an image token id for hand-written prompts
# Row 0: two images, the first with 2 real tiles, the second with 1; row 1 (left-padded): one
# image with 2 tiles. Three image slots, so row 1 has two padded ones and row 0 one.
HAND_IDS = torch.tensor([[1, IMAGE, 2, 3, IMAGE, 4, 5], [0, 0, 0, 6, IMAGE, 7, 8]])
HAND_TILES = torch.tensor([[[1, 1], [1, 0], [0, 0]], [[1, 1], [0, 0], [0, 0]]])


def test_cross_attention_mask_by_hand_for_two_images_and_padded_slots():
    mask = cross_attention_mask(HAND_IDS, IMAGE, HAND_TILES)
    expected = torch.zeros(2, 7, 3, 2, dtype=torch.long)
    expected[0, 1:4, 0] = torch.tensor([1, 1])  # the first image: up to the next image token
    expected[0, 4:, 1] = torch.tensor([1, 0])  # the second: to the end, its one real tile
    expected[1, 4:, 0] = torch.tensor([1, 1])  # the padded row: its only image
    assert mask.dtype == torch.long
    assert torch.equal(mask, expected)


def test_truncated_image_tokens_belong_to_the_kept_end():
    # Two images, but truncation left one image token: the last image's (left truncation
    # keeps the end) or the first's (right truncation keeps the beginning).
    ids = torch.tensor([[3, IMAGE, 4, 5]])
    tiles = torch.tensor([[[1, 1], [1, 0]]])
    last, first = (
        torch.zeros(1, 4, 2, 2, dtype=torch.long),
        torch.zeros(1, 4, 2, 2, dtype=torch.long),
    )
    last[0, 1:, 1] = torch.tensor([1, 0])
    first[0, 1:, 0] = torch.tensor([1, 1])
    assert torch.equal(cross_attention_mask(ids, IMAGE, tiles), last)  # "last" by default
    assert torch.equal(cross_attention_mask(ids, IMAGE, tiles, keep="last"), last)
    assert torch.equal(cross_attention_mask(ids, IMAGE, tiles, keep="first"), first)
    with pytest.raises(ValueError, match=r"^keep must be 'last' or 'first' \(got 'middle'\)$"):
        cross_attention_mask(ids, IMAGE, tiles, keep="middle")


def test_extend_over_completion_repeats_the_last_prompt_row():
    mask = cross_attention_mask(HAND_IDS, IMAGE, HAND_TILES)
    assert torch.equal(extend_over_completion(mask, 0), mask)
    for n in (1, 3):
        extended = extend_over_completion(mask, n)
        assert extended.shape == (2, 7 + n, 3, 2)
        assert torch.equal(extended[:, :7], mask)
        assert all(torch.equal(extended[:, 7 + i], mask[:, -1]) for i in range(n))


def test_config_checks_the_prompt_cap_and_the_truncation_side(tmp_path):
    config = MllamaGRPOConfig(
        output_dir=str(tmp_path), max_prompt_tokens=1, report_to=[], use_cpu=True, bf16=False
    )
    assert config.max_prompt_tokens == 1 and config.truncation_side == "left"
    with pytest.raises(ValueError, match=r"^max_prompt_tokens must be >= 1 or None \(got 0\)$"):
        MllamaGRPOConfig(
            output_dir=str(tmp_path), max_prompt_tokens=0, report_to=[], use_cpu=True, bf16=False
        )
    with pytest.raises(ValueError, match=r"^truncation_side must be one of .*\(got 'middle'\)$"):
        MllamaGRPOConfig(
            output_dir=str(tmp_path),
            truncation_side="middle",
            report_to=[],
            use_cpu=True,
            bf16=False,
        )


def test_text_only_batches_take_trls_path_and_score_like_a_direct_forward(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """Mllama with a batch of text questions only (no pixel_values anywhere): TRL's own
    generation and scoring, log-probs equal to a plain forward, entropies when asked; and the
    trainer maps the truncation side to the image slots that truncated prompts keep."""
    questions = math_questions.iloc[[len(math_questions) - 1, len(math_questions) - 2]]
    assert not questions["image"].any()
    trainer, dataset = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        bf16=False,
        max_prompt_tokens=None,
        max_completion_length=4,
    )
    batch = generation_batch(trainer, dataset, [0, 1])
    assert "pixel_values" not in batch and "aspect_ratio_ids" not in batch
    trainer.model.eval()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, batch["completion_ids"].size(1), compute_entropy=True
        )
    assert entropies is not None and entropies.shape == logps.shape
    for row in range(4):
        q = questions.iloc[row // 2]
        completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()]
        _, direct = direct_log_probs(
            trainer.model, processor, q["question"], "", completion, trainer.temperature
        )
        torch.testing.assert_close(logps[row, : len(completion)], direct, atol=1e-5, rtol=0)

    ids = torch.tensor([[3, trainer._image_token_id, 4, 5]])
    tiles = torch.tensor([[[1, 1], [1, 0]]])
    for side, keep in (("left", "last"), ("right", "first")):
        trainer.args.truncation_side = side
        expected = cross_attention_mask(ids, trainer._image_token_id, tiles, keep=keep)
        assert torch.equal(trainer._prompt_cross_attention_mask(ids, tiles), expected)


def test_right_truncation_keeps_the_start_of_the_question_and_its_image(
    fp32_model, processor, math_questions, training_params, tmp_path
):
    """Right truncation to 8 tokens keeps the question's first 8 tokens, and the image token
    before them: the image row sees its image, and every row gets its completions."""
    questions = math_questions.iloc[[0, len(math_questions) - 1]]  # an image and a text question
    trainer, dataset = make_trainer(
        fp32_model,
        processor,
        questions,
        training_params,
        tmp_path,
        bf16=False,
        max_prompt_tokens=8,
        truncation_side="right",
        max_completion_length=3,
    )
    batch = generation_batch(trainer, dataset, [0, 1])
    tokenizer = processor.tokenizer
    first = tokenizer.decode(
        tokenizer(questions.iloc[0]["question"], add_special_tokens=False)["input_ids"][:8]
    )
    assert f"<|image|>{first}<|eot_id|>" in _prompt_text(processor, batch, 0)
    assert (batch["prompt_ids"][:2] == processor.image_token_id).any(1).all()
    assert batch["completion_ids"].shape[0] == 4
    assert (batch["completion_mask"].sum(1) > 0).all()


def test_a_text_model_is_trained_by_trls_own_code(
    processor, math_questions, training_params, tmp_path
):
    """A plain Llama (no images) given positionally, as to GRPOTrainer: nothing Mllama-specific
    is switched on, and a batch generates through TRL's own path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = copy.deepcopy(processor.tokenizer)
    tokenizer.chat_template = processor.chat_template
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    training = copy.deepcopy(training_params)
    training["grpo"].update(max_completion_length=3, bf16=False, beta=0.0)  # no reference model
    training = TrainingConfig.from_params(training)
    args = grpo_config(training, output_dir=tmp_path / "out", device="cpu", reward_weights=[1.0])
    args.disable_tqdm, args.save_strategy = True, "no"
    text = math_questions.iloc[[len(math_questions) - 1, len(math_questions) - 2]]
    dataset = training_dataset(text).remove_columns("images")
    trainer = MllamaGRPOTrainer(model, [length_reward], args, dataset, None, tokenizer)
    assert not trainer._is_mllama and trainer._image_token_id is None
    batch = generation_batch(trainer, dataset, [0, 1])
    assert batch["completion_ids"].shape[0] == 2 * trainer.num_generations
    assert "pixel_values" not in batch


def test_the_grpo_keys_that_are_trls_reach_grpo_config_as_written(tmp_path):
    """training.grpo declares each of TRL's settings once, under TRL's name: every key but the
    project's batch keys is a field of TRL's GRPOConfig and reaches it with the YAML's value."""
    import dataclasses

    from trl import GRPOConfig

    from hle_reasoning.config import GRPOSettings
    from hle_reasoning.modeling.trl_mapping import grpo_config_kwargs

    trl_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(GRPOSettings.model_fields) - GRPOSettings.PROJECT_KEYS <= trl_fields
    assert not GRPOSettings.PROJECT_KEYS & trl_fields
    training = TrainingConfig.from_params(
        {"grpo": {"temperature": 0.9, "top_k": 5, "warmup_steps": 3, "seed": 7, "batch_size": 3}}
    )
    kwargs = grpo_config_kwargs(training, output_dir=tmp_path, device="cpu", reward_weights=[1.0])
    assert training.grpo.trl_settings().items() <= kwargs.items()
    assert kwargs["per_device_train_batch_size"] == 6  # 3 prompts x 2 completions
    assert not GRPOSettings.PROJECT_KEYS & set(kwargs)
    args = MllamaGRPOConfig(**kwargs)
    assert (args.temperature, args.top_k, args.warmup_steps, args.seed) == (0.9, 5, 3, 7)
