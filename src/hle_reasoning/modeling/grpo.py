"""GRPO for Llama 3.2 Vision: TRL's GRPOTrainer extended to Mllama's image inputs and a prompt cap.

TRL 1.16's ``GRPOTrainer`` forwards the image fields of Qwen-, Gemma- and LLaVA-style models, not
Mllama's: its ``cross_attention_mask`` (which text tokens see which image tiles),
``aspect_ratio_ids`` and ``aspect_ratio_mask``. ``MllamaGRPOTrainer`` overrides only what differs:

* ``_tokenize_prompts``: caps each prompt's question text at ``max_prompt_tokens`` (TRL 1.16
  dropped ``max_prompt_length``; ``PromptCapGRPOTrainer``, which text-only models train with),
  keeping the system prompt, the turn markup and ``<|image|>`` whole; renders text-only message
  contents as strings (TRL's VLM path makes lists of them, which a released template such as
  Llama 3.2 Vision's renders as a Python repr in the system turn); hands Mllama's image fields on;
* ``_generate_single_turn``: generates with a cross-attention mask that matches the truncated,
  left-padded prompts;
* ``_get_per_token_logps_and_entropies``: passes the Mllama fields to every log-prob pass (old,
  reference and policy), with the cross-attention mask rebuilt from the prompt tokens and extended
  over the completion exactly as ``generate`` extends it (the last prompt row repeated);
* ``_generate_and_score_completions`` / ``_compute_loss``: carry ``aspect_ratio_ids`` and
  ``aspect_ratio_mask`` from generation to the loss, which TRL drops;
* ``_save_rng_state``: under DDP, waits for every rank's RNG state before rank 0 marks the
  checkpoint complete (transformers does not: a killed rank left a "complete" checkpoint
  without its RNG state).

In a batch mixing image and text questions, the text rows go through both without image inputs,
exactly as they would alone. Everything else (sampling, rewards, advantages, the loss, the PEFT
reference, checkpoints) is TRL's; text-only models and batches take TRL's own code path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.models.mllama.processing_mllama import get_cross_attention_token_mask
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational
from trl.trainer.utils import pad

logger = logging.getLogger(__name__)

# Mllama's per-image tensors, all batch-first: (batch, max_images, ...).
MLLAMA_IMAGE_FIELDS = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")
TRUNCATION_SIDES = ("left", "right")


@dataclass
class MllamaGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the prompt cap that TRL 1.16 no longer applies."""

    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Keep at most this many tokens of each prompt's question text (None: no "
            "cap); the system prompt, the turn markup and the image token stay whole. The "
            "proposal tokenizes inputs to at most 32 tokens."
        },
    )
    truncation_side: str = field(
        default="left",
        metadata={
            "help": "Which end of an over-long question is cut: 'left' keeps its end (its last "
            "words), 'right' keeps its beginning."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.truncation_side not in TRUNCATION_SIDES:
            raise ValueError(
                f"truncation_side must be one of {TRUNCATION_SIDES} (got {self.truncation_side!r})"
            )
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(
                f"max_prompt_tokens must be >= 1 or None (got {self.max_prompt_tokens})"
            )


def truncate_prompt_ids(ids: list[int], max_tokens: int | None, side: str) -> list[int]:
    """``ids`` cut to ``max_tokens`` from the ``side`` end (unchanged when short enough)."""
    ids = list(ids)
    if max_tokens is None or len(ids) <= max_tokens:
        return ids
    return ids[-max_tokens:] if side == "left" else ids[:max_tokens]


def cross_attention_mask(
    input_ids: torch.Tensor,
    image_token_id: int,
    aspect_ratio_mask: torch.Tensor,
    keep: str = "last",
) -> torch.Tensor:
    """Mllama's cross-attention mask for a batch of (padded) prompt token ids.

    Returns ``(batch, seq_len, max_images, max_tiles)`` with 1 where a text token attends an
    image tile: from an image's ``<|image|>`` token to the next image's (or the end), over the
    image's real tiles (``aspect_ratio_mask``), the rule of ``MllamaProcessor``. Padding needs no
    special care as long as it sits outside those spans (left padding does). When truncation
    removed some image tokens, the remaining ones belong to the ``keep="last"`` images (left
    truncation) or the ``"first"`` ones (right truncation).
    """
    if keep not in ("last", "first"):
        raise ValueError(f"keep must be 'last' or 'first' (got {keep!r})")
    batch, length = input_ids.shape
    _, max_images, max_tiles = aspect_ratio_mask.shape
    mask = torch.zeros(
        (batch, length, max_images, max_tiles), dtype=torch.long, device=input_ids.device
    )
    tiles = aspect_ratio_mask.to(device=input_ids.device, dtype=torch.long)
    for row, ids in enumerate(input_ids.tolist()):
        spans = get_cross_attention_token_mask(ids, image_token_id)
        n_images = int((tiles[row].sum(-1) > 0).sum())
        first = max(n_images - len(spans), 0) if keep == "last" else 0
        for offset, (start, stop) in enumerate(spans[:n_images]):
            image = first + offset
            if image >= max_images:
                break
            end = length if stop == -1 else min(stop, length)
            mask[row, start:end, image] = tiles[row, image]
    return mask


def extend_over_completion(mask: torch.Tensor, completion_length: int) -> torch.Tensor:
    """The prompt's cross-attention mask extended over ``completion_length`` generated tokens.

    ``MllamaForConditionalGeneration.generate`` repeats the last prompt row for every new token
    (``_update_model_kwargs_for_generation``); the log-prob passes must see the same mask.
    """
    if completion_length <= 0:
        return mask
    tail = mask[:, -1:].expand(-1, completion_length, -1, -1)
    return torch.cat([mask, tail], dim=1)


def score_completion_tokens_only() -> None:
    """Make TRL's fused LM head score only the completion tokens on every device.

    TRL 1.16's ``fused_forward`` (trl/trainer/utils.py) scores only the positions with a label
    (the completion) where Triton runs, and every position (the prompt too) elsewhere, to keep
    tile shapes fixed for compiling backends such as Neuron. On a CPU nothing is compiled, and
    with Llama 3's 128,256-token vocabulary scoring the prompt positions is most of a step's
    time (prompts are several times longer than the 32-token completions). The result is the
    same: prompt positions are masked out either way (tests/modeling/test_grpo.py checks it).
    """
    import trl.trainer.utils as trl_utils

    trl_utils._use_triton = _compact_scoring


def _compact_scoring(device: Any) -> bool:  # TRL's only use of it: the compact decision
    return True


class PromptCapGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with the prompt cap of ``MllamaGRPOConfig`` (TRL 1.16 has none).

    The only override is ``_tokenize_prompts``; text-only models train through it on TRL's own
    text path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        score_completion_tokens_only()
        super().__init__(*args, **kwargs)

    @property
    def max_prompt_tokens(self) -> int | None:
        return getattr(self.args, "max_prompt_tokens", None)

    @property
    def truncation_side(self) -> str:
        return getattr(self.args, "truncation_side", "left")

    def _tokenize_prompts(self, prompts: list):
        prompts = [
            cap_question(prompt, self._tokenizer, self.max_prompt_tokens, self.truncation_side)
            for prompt in prompts
        ]
        if not (self._is_vlm and is_conversational({"prompt": prompts[0]})):
            return super()._tokenize_prompts(prompts)
        # TRL's VLM path turns every string content into a list of parts, and a released
        # template such as Llama 3.2 Vision's renders a system message's list as its Python
        # repr: render the prompts with text-only contents as strings (the same text otherwise).
        prompts = [text_contents_as_strings(prompt) for prompt in prompts]
        images = [
            [
                part["image"]
                for m in p
                if isinstance(m["content"], list)
                for part in m["content"]
                if part.get("type") == "image"
            ]
            or None
            for p in prompts
        ]
        has_images = any(images)
        tokenized = self.processing_class.apply_chat_template(
            conversation=prompts,
            tools=self.tools or None,
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **self.chat_template_kwargs,
        )
        fields = {k: v for k, v in tokenized.items() if k not in ("input_ids", "attention_mask")}
        return tokenized["input_ids"], images if has_images else None, fields


def text_contents_as_strings(messages: list[dict]) -> list[dict]:
    """``messages`` with each content made only of text parts joined into one string."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and all(p.get("type") == "text" for p in content):
            out.append({**message, "content": "".join(p["text"] for p in content)})
        else:
            out.append(message)
    return out


def cap_question(messages: Any, tokenizer: Any, max_tokens: int | None, side: str) -> Any:
    """The prompt with its question's text (the last user message's text) cut to ``max_tokens``
    tokens from the ``side`` end (``left`` keeps its end); the system prompt, the turn markup and
    the image stay whole. A plain string prompt is cut the same way."""
    if max_tokens is None:
        return messages

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        kept = truncate_prompt_ids(ids, max_tokens, side)
        return tokenizer.decode(kept)

    if isinstance(messages, str):
        return cut(messages)
    messages = list(messages)
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            content = cut(content)
        else:
            content = [
                {**part, "text": cut(part["text"])} if part.get("type") == "text" else part
                for part in content
            ]
        messages[index] = {**message, "content": content}
        break
    return messages


class MllamaGRPOTrainer(PromptCapGRPOTrainer):
    """TRL's ``GRPOTrainer`` that trains Llama 3.2 Vision on image questions (see module docs).

    Use it like ``GRPOTrainer`` with an ``MllamaGRPOConfig``; image questions go in an ``images``
    column (a list of PIL images per row, empty for text questions) next to conversational
    prompts whose image placeholders (``{"type": "image"}``) mark where the image goes.

    In a batch that mixes image and text questions, the text rows are generated and scored
    without image inputs, as they would be alone: Mllama's cross-attention layers let a row with
    no image token still attend to the (blank) image padded in for it, which would change a text
    question's log-probs by its batch neighbours.
    """

    args: MllamaGRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_type = getattr(self.model.config, "model_type", None)
        self._is_mllama = model_type == "mllama" and self._is_vlm
        self._image_token_id = self.processing_class.image_token_id if self._is_mllama else None
        # Mllama fields of the batch being scored by _compute_loss, which TRL does not forward.
        self._loss_image_fields: dict[str, torch.Tensor] = {}

    def _prompt_cross_attention_mask(
        self, prompt_ids: torch.Tensor, aspect_ratio_mask: torch.Tensor
    ) -> torch.Tensor:
        keep = "last" if self.truncation_side == "left" else "first"
        return cross_attention_mask(prompt_ids, self._image_token_id, aspect_ratio_mask, keep)

    def _left_pad(self, prompt_ids: list[list[int]]) -> torch.Tensor:
        """Prompts padded as TRL pads them for generation and scoring."""
        return pad(
            [torch.tensor(ids) for ids in prompt_ids],
            padding_value=self._tokenizer.pad_token_id,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )

    # ----------------------------------------------------------------- prompts and generation
    def _tokenize_prompts(self, prompts: list):
        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        if self._is_mllama and "pixel_values" in fields:
            # Mllama's processor wants an (empty) image list for text rows of a mixed batch.
            images = [list(row or []) for row in images]
            # The processor's cross-attention mask is for the untruncated, unpadded prompts;
            # _generate_single_turn builds the right one.
            fields = {k: torch.as_tensor(fields[k]) for k in MLLAMA_IMAGE_FIELDS}
        return prompt_ids, images, fields

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        if not self._is_mllama or "pixel_values" not in multimodal_fields:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        sees_image = (
            self._prompt_cross_attention_mask(
                self._left_pad(prompt_ids), multimodal_fields["aspect_ratio_mask"]
            )
            .flatten(1)
            .any(1)
            .tolist()
        )
        completion_ids: list = [None] * len(prompt_ids)
        for with_image in (True, False):
            rows = [i for i, sees in enumerate(sees_image) if sees == with_image]
            if not rows:
                continue
            ids = [prompt_ids[i] for i in rows]
            fields: dict[str, torch.Tensor] = {}
            if with_image:
                fields = {k: multimodal_fields[k][rows] for k in MLLAMA_IMAGE_FIELDS}
                fields["cross_attention_mask"] = self._prompt_cross_attention_mask(
                    self._left_pad(ids), fields["aspect_ratio_mask"]
                )
            generated, _ = super()._generate_single_turn(
                ids, None, fields, num_generations, has_tool_images
            )
            for row, completion in zip(rows, generated, strict=True):
                completion_ids[row] = completion
        return completion_ids, None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self._is_mllama and "pixel_values" in output:
            # TRL keeps pixel_values for the loss but drops Mllama's aspect-ratio fields.
            images = [list(example.get("images") or []) for example in inputs]
            fields = self.processing_class.image_processor(images=images, return_tensors="pt")
            device = output["pixel_values"].device
            for key in ("aspect_ratio_ids", "aspect_ratio_mask"):
                output[key] = fields[key].to(device)
        return output

    def _compute_loss(self, model, inputs):
        self._loss_image_fields = {
            k: inputs[k] for k in ("aspect_ratio_ids", "aspect_ratio_mask") if k in inputs
        }
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_image_fields = {}

    # ----------------------------------------------------------------- checkpoints
    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        # Every rank saves its own rng_state_<rank>.pth, and rank 0 then writes
        # trainer_state.json, the mark of a complete checkpoint (checkpoints.latest_checkpoint),
        # without waiting for the others. A rank killed before or while saving its RNG state
        # left a checkpoint that resumed without it, or could not load it on every rerun; with
        # this barrier such a checkpoint stays incomplete and the rerun resumes the one before.
        self.accelerator.wait_for_everyone()

    # ----------------------------------------------------------------- log-prob passes
    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        pixel_values=None,
        aspect_ratio_ids=None,
        aspect_ratio_mask=None,
        cross_attention_mask=None,  # noqa: ARG002 - rebuilt from input_ids (see below)
        **kwargs,
    ):
        if not self._is_mllama or pixel_values is None:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                pixel_values=pixel_values,
                **kwargs,
            )
        if aspect_ratio_ids is None:
            aspect_ratio_ids = self._loss_image_fields["aspect_ratio_ids"]
            aspect_ratio_mask = self._loss_image_fields["aspect_ratio_mask"]
        # The processor's mask covers the untruncated prompts; rebuild it from the tokens scored,
        # extended over the completion as generate() extends it.
        prompt_ids = input_ids[:, : input_ids.size(1) - logits_to_keep]
        cross_mask = extend_over_completion(
            self._prompt_cross_attention_mask(prompt_ids, aspect_ratio_mask), logits_to_keep
        )
        sees_image = cross_mask.flatten(1).any(1)
        image_rows = sees_image.nonzero()[:, 0]
        text_rows = (~sees_image).nonzero()[:, 0]
        logps, entropies, aux = [], [], []
        if len(text_rows):  # text rows: TRL's own pass, without image inputs
            out = super()._get_per_token_logps_and_entropies(
                model,
                input_ids[text_rows],
                attention_mask[text_rows],
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
            )
            logps.append(out[0])
            entropies.append(out[1])
            aux.append(out[2])
        batch_size = batch_size or input_ids.size(0)
        for start in range(0, len(image_rows), batch_size):
            rows = image_rows[start : start + batch_size]
            ids, mask = input_ids[rows], attention_mask[rows]
            model_inputs = {
                "input_ids": ids,
                "attention_mask": mask,
                "pixel_values": pixel_values[rows],
                "aspect_ratio_ids": aspect_ratio_ids[rows],
                "aspect_ratio_mask": aspect_ratio_mask[rows],
                "cross_attention_mask": cross_mask[rows],
            }
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            # Only the completion tokens are scored (as in TRL).
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            logps.append(outputs.log_probs[:, -logits_to_keep:])
            entropies.append(outputs.entropy[:, -logits_to_keep:] if compute_entropy else None)
            aux.append(outputs.aux_loss if compute_aux_loss else None)
        # Back to the batch's row order.
        order = torch.argsort(torch.cat([text_rows, image_rows]))
        per_token_logps = torch.cat(logps)[order]
        per_token_entropies = torch.cat(entropies)[order] if compute_entropy else None
        aux_loss = torch.stack(aux).mean() if compute_aux_loss else None
        return per_token_logps, per_token_entropies, aux_loss
