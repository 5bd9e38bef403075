import hashlib

import pandas as pd
import pytest

from hle_reasoning.config import ModelConfig, QuantizationConfig
from hle_reasoning.modeling.generation import (
    RESPONSE_FIELDS,
    GenerationConfig,
    batches,
    files_fingerprint,
    generate_responses,
    generation_key,
    load_for_evaluation,
    merge_adapter,
)

FP32 = ModelConfig(device="cpu", dtype="float32", quantization=QuantizationConfig(enabled=False))


@pytest.fixture(scope="module")
def fp32(tiny_dir):
    return load_for_evaluation(str(tiny_dir), None, FP32)


@pytest.fixture(scope="module")
def questions(math_questions) -> pd.DataFrame:
    """Three image questions and eight text questions of the bundled sample."""
    with_image = math_questions[math_questions["image"] != ""].head(3)
    text = math_questions[math_questions["image"] == ""].head(8)
    return pd.concat([text.iloc[:4], with_image, text.iloc[4:]]).reset_index(drop=True)


def answer(model_and_processor, questions, **config) -> pd.DataFrame:
    model, processor = model_and_processor
    chunks = list(
        generate_responses(model, processor, questions, GenerationConfig(**config), progress=False)
    )
    return pd.concat(chunks, ignore_index=True)


def test_batches_keep_text_and_image_questions_apart(questions):
    groups = batches(questions, 4)
    assert [len(g) for g in groups] == [4, 4, 3]
    for group in groups:
        assert group["image"].eq("").all() or group["image"].ne("").all()
    assert sorted(pd.concat(groups)["id"]) == sorted(questions["id"])


def test_batched_greedy_answers_equal_one_at_a_time(fp32, questions):
    # Left padding must not change what the model says (fp32: no quantization noise).
    batched = answer(fp32, questions, batch_size=8, max_new_tokens=12).set_index("id")
    single = answer(fp32, questions, batch_size=1, max_new_tokens=12).set_index("id")
    assert list(batched.columns) == list(RESPONSE_FIELDS[1:])
    assert len(batched) == len(questions)
    pd.testing.assert_series_equal(batched["response"], single.loc[batched.index, "response"])
    assert (batched["response_tokens"] <= 12).all() and (batched["response"] != "").all()
    # The prompt is the chat template with the HLE system prompt; image prompts hold the image
    # token, so they count it.
    assert (batched["prompt_tokens"] > 40).all()


def test_each_batch_is_yielded_as_soon_as_it_is_done(fp32, questions):
    model, processor = fp32
    processor.tokenizer.padding_side = "right"
    stream = generate_responses(
        model,
        processor,
        questions,
        GenerationConfig(batch_size=4, max_new_tokens=4),
        progress=False,
    )
    first = next(stream)
    assert len(first) == 4
    assert processor.tokenizer.padding_side == "left"  # while generating
    stream.close()  # a consumer that stops early leaves the processor as it was
    assert processor.tokenizer.padding_side == "right"


def test_sampling_is_seeded(fp32, questions):
    text = questions[questions["image"] == ""].head(4)
    one = answer(fp32, text, do_sample=True, temperature=1.0, seed=3, max_new_tokens=8)
    two = answer(fp32, text, do_sample=True, temperature=1.0, seed=3, max_new_tokens=8)
    greedy = answer(fp32, text, max_new_tokens=8)
    assert one["response"].tolist() == two["response"].tolist()
    assert one["response"].tolist() != greedy["response"].tolist()


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="evaluation.generation.batch_size"):
        GenerationConfig(batch_size=0)
    with pytest.raises(ValueError, match="temperature"):
        GenerationConfig(do_sample=True, temperature=0)
    with pytest.raises(
        ValueError, match=r"unknown evaluation.generation parameter\(s\) \['beams'\]"
    ):
        GenerationConfig.from_params({"beams": 4})


def test_generation_key_changes_with_what_answers_depend_on(tiny_dir, tmp_path):
    config = GenerationConfig()
    key = generation_key(str(tiny_dir), None, config, FP32)
    assert key == generation_key(str(tiny_dir), None, GenerationConfig(), FP32)
    assert key != generation_key(str(tiny_dir), None, GenerationConfig(max_new_tokens=7), FP32)
    assert key != generation_key(
        str(tiny_dir), None, config, FP32.model_copy(update={"quantization": QuantizationConfig()})
    )
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    with_adapter = generation_key(str(tiny_dir), str(adapter), config, FP32)
    assert with_adapter != key
    (adapter / "adapter_model.safetensors").write_bytes(b"two")  # retrained: new weights
    assert generation_key(str(tiny_dir), str(adapter), config, FP32) != with_adapter
    # A hub id (no local files) is fingerprinted by its name: the same in every process (no
    # salted hash()), different for another model, and it changes the key.
    hub_11b, hub_90b = (
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "meta-llama/Llama-3.2-90B-Vision-Instruct",
    )
    assert files_fingerprint(hub_11b) == hashlib.sha256(hub_11b.encode()).hexdigest()[:16]
    assert files_fingerprint(hub_11b) != files_fingerprint(hub_90b)
    assert generation_key(hub_11b, None, config, FP32) != generation_key(
        hub_90b, None, config, FP32
    )
    assert files_fingerprint(None) == files_fingerprint("") == "none"
    # The chat template's date and the image's place change the prompt, hence the answers.
    assert key != generation_key(
        str(tiny_dir), None, config, FP32.model_copy(update={"chat_template_date": "01 Jan 2026"})
    )
    assert key != generation_key(
        str(tiny_dir), None, config, FP32.model_copy(update={"image_position": "after"})
    )
    # CPU threads do not change what greedy decoding answers.
    assert generation_key(str(tiny_dir), None, GenerationConfig(cpu_threads=2), FP32) == key


def test_a_2mb_question_is_cut_to_the_models_context_and_said_so(fp32, questions, caplog):
    """A question of 2 MB of text (about 800k tokens) would make the model allocate hundreds of
    GB; its prompt is cut to the context less the response budget, the others stay whole."""
    model, _ = fp32
    context = model.config.get_text_config().max_position_embeddings
    huge = questions.iloc[[0, 4, 1]].reset_index(drop=True)  # text, image, text
    huge.loc[0, "question"] = "Let x be the number of primes below 10. " * 52_000  # 2.1 MB
    huge.loc[1, "question"] = "Describe the figure. " * 20_000
    with caplog.at_level("WARNING", logger="hle_reasoning.modeling.generation"):
        answers = answer(fp32, huge, batch_size=2, max_new_tokens=8).set_index("id")
    limit = context - 8
    assert (answers["prompt_tokens"] <= limit).all()
    assert answers.loc[huge["id"][0], "prompt_tokens"] >= limit - 2  # cut, not emptied
    assert answers.loc[huge["id"][2], "prompt_tokens"] < 200  # an ordinary question: whole
    cut = [r.getMessage() for r in caplog.records if "cut to" in r.getMessage()]
    assert len(cut) == 2  # the text batch and the image batch, each naming its one question
    assert f"1 question(s) cut to {limit} prompt tokens" in cut[0]
    assert {huge["id"][0], huge["id"][1]} == {m.rsplit(": ", 1)[1] for m in cut}


def test_the_merged_checkpoint_answers_as_base_plus_adapter(fp32, tiny_dir, questions, tmp_path):
    """The checkpoint a serving engine loads for the fine-tuned variant says what the base model
    with the adapter says, and not what the base alone says."""
    from peft import LoraConfig, get_peft_model

    from hle_reasoning.datasets import BaseModelDataset

    base, processor = load_for_evaluation(str(tiny_dir), None, FP32)
    lora = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=r"^model\.language_model\..*\.(q_proj|v_proj)$",
        init_lora_weights=False,  # random B: an adapter that changes the answers
    )
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    merged = BaseModelDataset(path=str(tmp_path / "merged"))
    merged.save(merge_adapter(str(tiny_dir), str(tmp_path / "adapter"), FP32))
    served = load_for_evaluation(merged.load(), None, FP32)
    adapted = load_for_evaluation(str(tiny_dir), str(tmp_path / "adapter"), FP32)
    with_merged = answer(served, questions, batch_size=8, max_new_tokens=8)
    with_adapter = answer(adapted, questions, batch_size=8, max_new_tokens=8)
    alone = answer(fp32, questions, batch_size=8, max_new_tokens=8)
    pd.testing.assert_series_equal(with_merged["response"], with_adapter["response"])
    assert (with_merged["response"] != alone["response"]).any()
