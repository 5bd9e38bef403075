"""Model families: what a loaded model's architecture decides once, for training and answering.

A saved model's ``config.json`` names its architecture; the family says which transformers class
loads it, whether it takes images, which trainer trains it and where LoRA goes:

* ``mllama``: Llama 3.2 Vision (``MllamaForConditionalGeneration``), trained by the project's
  ``MllamaGRPOTrainer`` (TRL does not forward Mllama's cross-attention inputs);
* ``vision``: the other image-text-to-text models that TRL's ``GRPOTrainer`` trains natively
  (Qwen2-VL, Qwen2.5-VL, ...), through TRL's own vision path;
* ``text``: text-only causal language models, through TRL's own text path. They answer and train
  on the text-only questions only, as the HLE paper evaluates text-only models.

LoRA targets the language model's projections in every family: a regex on the module names of
that family's language model, so a vision tower's projections of the same name stay frozen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hle_reasoning.modeling.access import ModelAccessError, rewrite_hint

MLLAMA, VISION, TEXT = "mllama", "vision", "text"


@dataclass(frozen=True)
class Family:
    """How the project handles one kind of model."""

    name: str
    takes_images: bool
    # The language model's modules, as a regex prefix of their names in the PEFT-wrapped model's
    # base (``model.language_model.`` for the vision families, ``model.layers.`` for causal LMs).
    language_model_prefix: str
    # Images reach the text by cross-attention that starts at the image token (Mllama: "image
    # will only attend to the subsequent text tokens"): the image goes before the question.
    cross_attention: bool = False

    def lora_target(self, modules: list[str]) -> str:
        """A regex matching ``modules`` (e.g. q_proj, v_proj) inside the language model only."""
        names = "|".join(re.escape(m) for m in modules)
        return rf"^{re.escape(self.language_model_prefix)}.*\.({names})$"

    def model_class(self):
        """The transformers auto class that loads this family's checkpoints."""
        import transformers

        return {
            MLLAMA: transformers.MllamaForConditionalGeneration,
            VISION: transformers.AutoModelForImageTextToText,
            TEXT: transformers.AutoModelForCausalLM,
        }[self.name]

    def trainer_class(self):
        """The GRPO trainer of this family."""
        from hle_reasoning.modeling import grpo

        return {
            MLLAMA: grpo.MllamaGRPOTrainer,
            VISION: grpo.GRPOTrainer,
            TEXT: grpo.PromptCapGRPOTrainer,
        }[self.name]


FAMILIES = {
    MLLAMA: Family(
        MLLAMA,
        takes_images=True,
        language_model_prefix="model.language_model.",
        cross_attention=True,
    ),
    VISION: Family(VISION, takes_images=True, language_model_prefix="model.language_model."),
    TEXT: Family(TEXT, takes_images=False, language_model_prefix="model.layers."),
}


class UnsupportedModelError(ValueError):
    """A model whose architecture no family covers; the message says which ones do."""


def family_of_config(config: Any) -> Family:
    """The family of a transformers config object (decided from its model type)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type == MLLAMA:
        return FAMILIES[MLLAMA]
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return FAMILIES[VISION]
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return FAMILIES[TEXT]
    raise UnsupportedModelError(
        f"model type {model_type!r} is neither an image-text-to-text model nor a causal language "
        "model of transformers; the study trains Mllama, TRL's vision-language models (Qwen2-VL, "
        "Qwen2.5-VL, ...) and causal LMs."
    )


def family_of(name_or_path: str | Path) -> Family:
    """The family of a saved model (a directory with config.json, or a hub id)."""
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_bytes().decode("utf-8"))
            model_type = config.get("model_type")
        except (ValueError, AttributeError) as error:  # not UTF-8, not JSON, not an object
            raise ModelAccessError(
                f"{path / 'config.json'} is damaged ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:120] if str(error) else ''}); "
                f"{rewrite_hint(path)}"
            ) from None
        if model_type == MLLAMA:
            # Decided from the file alone: importing transformers (and torch with it) costs
            # seconds, which a run that only reads stored answers should not pay.
            return FAMILIES[MLLAMA]
        from transformers import AutoConfig

        config = AutoConfig.for_model(model_type) if model_type else None
        return family_of_config(config)
    from transformers import AutoConfig

    from hle_reasoning import hub

    return family_of_config(AutoConfig.from_pretrained(str(name_or_path), token=hub.token()))


def questions_for(questions, family: Family, split: str = "test"):
    """The questions a family can take, and the subset's description for reports.

    A text-only model gets the questions without an image, as the HLE paper evaluates text-only
    models ("evaluated on text-only subset"). Returns ``(questions, subset)`` with ``subset`` a
    dict: ``subset`` ("all" or "text-only"), ``questions`` (kept), ``of`` (all) and ``note``
    ("66 of 73 test questions: text-only subset"; empty when nothing is left out).
    """
    from hle_reasoning.hle.data.schema import has_image

    total = len(questions)
    if family.takes_images:
        return questions, {"subset": "all", "questions": total, "of": total, "note": ""}
    with_image = questions["image"].map(has_image).astype(bool)
    kept = questions[~with_image].reset_index(drop=True)
    note = f"{len(kept)} of {total} {split} questions: text-only subset"
    return kept, {"subset": "text-only", "questions": len(kept), "of": total, "note": note}
