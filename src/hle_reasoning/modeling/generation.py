"""Answering HLE questions with the study's model: batched generation, yielded batch by batch.

``generate_responses`` renders each question with the official HLE system prompt through the
model's chat template (see ``hle_reasoning.hle.data.prompts``), batches questions (text-only
and image questions apart, since Mllama's cross-attention inputs differ), generates greedily or
by sampling, and yields each batch's responses with their question ids as soon as the batch is
done, so a caller can persist them and a later run can skip what is already answered.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from hle_reasoning.config.evaluation import GenerationConfig
from hle_reasoning.config.model import ModelConfig
from hle_reasoning.hle.data.prompts import (
    DEFAULT_CHAT_TEMPLATE_DATE,
    SYSTEM_PROMPT,
    image_goes_first,
    prompt_images,
    prompt_text,
)
from hle_reasoning.hle.data.records import content_key
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.modeling.families import family_of_config
from hle_reasoning.modeling.models import BuiltModel, load_model, load_processor, loading_folder
from hle_reasoning.modeling.openai_backend import RESPONSE_FIELDS

logger = logging.getLogger(__name__)

# A stored answer: the fields a backend produces, the setup it depends on (``generation_key``)
# and who produced it (``answered_by``: ``local``, or ``openai:<served model>``).
RESPONSE_COLUMNS = (*RESPONSE_FIELDS, "generation_key", "answered_by")
# Files up to this size are hashed by content for the fingerprint; larger ones by name and size.
_HASH_LIMIT_BYTES = 256 * 1024 * 1024


__all__ = [
    "RESPONSE_COLUMNS",
    "GenerationConfig",
    "batches",
    "context_length",
    "files_fingerprint",
    "fitted_prompt",
    "generate_responses",
    "generation_key",
    "load_for_evaluation",
    "merge_adapter",
]


def load_for_evaluation(
    base_model: str,
    adapter: str | None,
    model_config: ModelConfig,
) -> tuple[Any, Any]:
    """The base model (quantized as ``model_config`` says) with the LoRA ``adapter`` if given."""
    model = load_model(
        base_model,
        quantization=model_config.quantization,
        device=model_config.device,
        dtype=model_config.dtype,
    )
    if adapter:
        from peft import PeftModel

        with loading_folder(adapter, "LoRA adapter"):
            model = PeftModel.from_pretrained(model, str(adapter))
        logger.info("Applied LoRA adapter %s", adapter)
    return model.eval(), load_processor(base_model)


def merge_adapter(base_model: str, adapter: str, model_config: ModelConfig) -> BuiltModel:
    """The base model with the LoRA ``adapter`` merged into its weights (peft's
    ``merge_and_unload``), unquantized in ``model.dtype``: a normal checkpoint that any serving
    engine loads as it loads the base (SGLang serves Mllama without LoRA support)."""
    from peft import PeftModel

    model = load_model(base_model, quantization=None, device="cpu", dtype=model_config.dtype)
    with loading_folder(adapter, "LoRA adapter"):
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    logger.info("Merged LoRA adapter %s into %s", adapter, base_model)
    return BuiltModel(
        merged.eval(), load_processor(base_model), built_from=f"{base_model}+{adapter}"
    )


def files_fingerprint(path_or_name: str | None) -> str:
    """A short content hash of a model or adapter directory (the name itself for hub ids)."""
    if not path_or_name:
        return "none"
    path = Path(path_or_name)
    digest = hashlib.sha256()
    if not path.exists():
        digest.update(str(path_or_name).encode())
        return digest.hexdigest()[:16]
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        if size <= _HASH_LIMIT_BYTES:
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def generation_key(
    base_model: str,
    adapter: str | None,
    config: GenerationConfig,
    model_config: ModelConfig,
) -> str:
    """What a stored response depends on: weights, adapter, decoding, prompt and quantization.

    Responses stored under another key are stale and answered again.
    """
    payload = {
        "base_model": files_fingerprint(base_model),
        "adapter": files_fingerprint(adapter),
        "generation": {k: v for k, v in config.model_dump().items() if k != "cpu_threads"},
        "system_prompt": SYSTEM_PROMPT,
        "chat_template_date": model_config.chat_template_date,
        "image_position": model_config.image_position,
        "quantization": model_config.quantization.model_dump(),
        "dtype": model_config.dtype,
    }
    return content_key(payload, 16)


def batches(questions: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    """Questions in batches of ``batch_size``: text-only first, then image questions.

    Text-only and image prompts never share a batch: Mllama needs pixel inputs for every row
    of an image batch.
    """
    with_image = questions["image"].map(has_image)
    out = []
    for group in (questions[~with_image], questions[with_image]):
        out.extend(
            group.iloc[start : start + batch_size] for start in range(0, len(group), batch_size)
        )
    return out


def _pad_token_id(processor: Any, model: Any) -> int:
    """The tokenizer's pad token; without one, Llama's reserved pad token or the first EOS."""
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token_id is None:
        reserved = tokenizer.convert_tokens_to_ids("<|finetune_right_pad_id|>")
        if reserved is not None and reserved != tokenizer.unk_token_id:
            tokenizer.pad_token = "<|finetune_right_pad_id|>"
        else:
            eos = model.generation_config.eos_token_id
            tokenizer.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return tokenizer.pad_token_id


def _stop_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def context_length(model: Any) -> int | None:
    """The model's context in tokens (its text model's ``max_position_embeddings``)."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


def fitted_prompt(
    processor: Any,
    question: str,
    image: str,
    system_role: str,
    limit: int | None,
    plain: bool = False,
    image_first: bool = True,
    date: str = DEFAULT_CHAT_TEMPLATE_DATE,
) -> tuple[str, bool]:
    """The rendered prompt of a question, its question text cut (keeping its end, as training's
    ``truncation_side: left`` does) so the whole prompt holds at most ``limit`` tokens; and
    whether it was cut. Only the question's text is cut: the system prompt, the turn markup and
    ``<|image|>`` stay whole wherever they are."""

    def render(text: str) -> str:
        return prompt_text(
            processor, text, image, SYSTEM_PROMPT, system_role, plain, image_first, date
        )

    text = render(question)
    # A byte-level tokenizer makes at most one token per byte: short prompts need no count.
    if limit is None or len(text.encode("utf-8")) <= limit:
        return text, False
    tokenizer = getattr(processor, "tokenizer", processor)
    total = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if total <= limit:
        return text, False
    ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    keep = max(0, len(ids) - (total - limit))
    for _ in range(4):  # decoding and re-encoding a cut can shift a token or two
        cut = tokenizer.decode(ids[len(ids) - keep :]) if keep else ""
        text = render(cut)
        excess = len(tokenizer(text, add_special_tokens=False)["input_ids"]) - limit
        if excess <= 0 or keep == 0:
            break
        keep = max(0, keep - excess)
    return text, True


def generate_responses(
    model: Any,
    processor: Any,
    questions: pd.DataFrame,
    config: GenerationConfig,
    *,
    progress: bool = True,
    description: str = "answering",
    chat_template_date: str = DEFAULT_CHAT_TEMPLATE_DATE,
    image_position: str = "auto",
) -> Iterator[pd.DataFrame]:
    """Answer ``questions`` (columns ``id``, ``question``, ``image``) batch by batch.

    Yields one DataFrame per batch with :data:`RESPONSE_FIELDS`:
    ``response`` (decoded new tokens, special tokens dropped), ``prompt_tokens``,
    ``response_tokens``, ``finished`` (the model stopped before ``max_new_tokens``) and
    ``seconds`` (the batch's wall time divided among its questions).
    """
    import torch
    from tqdm.auto import tqdm

    # A text-only model's "processor" is its tokenizer; its prompts are plain strings.
    family = family_of_config(model.config)
    plain = not family.takes_images
    image_first = image_goes_first(image_position, family.cross_attention)
    tokenizer = getattr(processor, "tokenizer", processor)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    pad_id = _pad_token_id(processor, model)
    stop_ids = _stop_ids(model)
    device = next(model.parameters()).device
    sampling = (
        {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
        if config.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    context = context_length(model)
    # The prompt and the response budget share the model's context.
    limit = context - config.max_new_tokens if context else None
    if limit is not None and limit < 1:
        raise ValueError(
            f"evaluation.generation.max_new_tokens {config.max_new_tokens} leaves no room for a "
            f"prompt in the model's context of {context} tokens: lower it."
        )
    bar = tqdm(total=len(questions), desc=description, unit="question", disable=not progress)
    threads = torch.get_num_threads()
    if config.cpu_threads and device.type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        for batch in batches(questions, config.batch_size):
            started = time.perf_counter()
            fitted = [
                fitted_prompt(
                    processor,
                    row.question,
                    row.image,
                    config.system_role,
                    limit,
                    plain,
                    image_first,
                    chat_template_date,
                )
                for row in batch.itertuples()
            ]
            texts = [text for text, _ in fitted]
            cut = [
                str(row.id)
                for row, (_, was_cut) in zip(batch.itertuples(), fitted, strict=True)
                if was_cut
            ]
            if cut:
                logger.warning(
                    "%d question(s) cut to %d prompt tokens (the model's context of %d less "
                    "max_new_tokens %d): %s",
                    len(cut),
                    limit,
                    context,
                    config.max_new_tokens,
                    ", ".join(cut),
                )
            images = [prompt_images(row.image, row.id) for row in batch.itertuples()]
            inputs = processor(
                text=texts,
                **({"images": images} if all(images) else {}),
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,  # the chat template already starts with <|begin_of_text|>
            ).to(device)
            if config.do_sample:
                torch.manual_seed(config.seed)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=config.max_new_tokens,
                    pad_token_id=pad_id,
                    **sampling,
                )
            prompt_len = inputs["input_ids"].shape[1]
            new_tokens = output[:, prompt_len:].cpu()
            responses = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            per_question = (time.perf_counter() - started) / len(batch)
            rows = []
            for row, tokens, text, mask in zip(
                batch.itertuples(),
                new_tokens,
                responses,
                inputs["attention_mask"].cpu(),
                strict=True,
            ):
                ids = tokens.tolist()
                ended = [i for i, t in enumerate(ids) if t in stop_ids]
                length = ended[0] + 1 if ended else sum(1 for t in ids if t != pad_id)
                rows.append(
                    {
                        "id": str(row.id),
                        "response": text.strip(),
                        "prompt_tokens": int(mask.sum()),
                        "response_tokens": int(length),
                        "finished": bool(ended),
                        "seconds": per_question,
                    }
                )
            bar.update(len(batch))
            yield pd.DataFrame(rows, columns=list(RESPONSE_FIELDS))
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        torch.set_num_threads(threads)
