"""Answering HLE questions with the study's model: batched generation, yielded batch by batch.

``generate_responses`` renders each question with the official HLE system prompt through the
model's chat template (see ``hle_reasoning.modeling.prompting``), batches questions (text-only
and image questions apart, since Mllama's cross-attention inputs differ), generates greedily or
by sampling, and yields each batch's responses with their question ids as soon as the batch is
done, so a caller can persist them and a later run can skip what is already answered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hle_reasoning.hle.prompts import SYSTEM_PROMPT
from hle_reasoning.hle.schema import has_image
from hle_reasoning.modeling.models import load_model, load_processor
from hle_reasoning.modeling.prompting import prompt_images, prompt_text

logger = logging.getLogger(__name__)

RESPONSE_COLUMNS = (
    "id",
    "response",
    "prompt_tokens",
    "response_tokens",
    "finished",
    "seconds",
    "generation_key",
)
# Files up to this size are hashed by content for the fingerprint; larger ones by name and size.
_HASH_LIMIT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class GenerationConfig:
    """How answers are generated (``evaluation.generation`` in parameters_evaluation.yml).

    ``batch_size``: questions per ``generate`` call. ``max_new_tokens``: the response budget.
    ``do_sample``: ``False`` is greedy (the official script's temperature 0); ``True`` samples
    with ``temperature`` and ``top_p``, seeded by ``seed`` per batch. ``system_role``: where the
    HLE system prompt goes (``auto``: a system message, or the user turn for image questions,
    which Llama 3.2 Vision's template requires; see ``hle_reasoning.hle.prompts``).
    ``cpu_threads``: torch's intra-op threads while generating on a CPU (``None``: torch's
    default); not part of what an answer depends on (``generation_key`` leaves it out).
    """

    batch_size: int = 8
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    system_role: str = "auto"
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(
                f"evaluation.generation.batch_size must be >= 1 (got {self.batch_size})"
            )
        if self.max_new_tokens < 1:
            raise ValueError(
                f"evaluation.generation.max_new_tokens must be >= 1 (got {self.max_new_tokens})"
            )
        if self.do_sample and self.temperature <= 0:
            raise ValueError(
                "evaluation.generation.temperature must be > 0 when do_sample is true; "
                "set do_sample: false for greedy decoding"
            )
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(
                f"evaluation.generation.cpu_threads must be >= 1 or null (got {self.cpu_threads})"
            )
        if self.system_role not in ("auto", "system", "user"):
            raise ValueError(
                f"evaluation.generation.system_role must be auto, system or user (got {self.system_role!r})"
            )

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> GenerationConfig:
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"unknown evaluation.generation parameter(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**params)


def load_for_evaluation(
    base_model: str, adapter: str | None = None, model_params: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """The base model (quantized as ``model_params`` say) with the LoRA ``adapter`` if given."""
    model_params = model_params or {}
    model = load_model(
        base_model,
        quantization=model_params.get("quantization"),
        device=model_params.get("device", "auto"),
        dtype=model_params.get("dtype", "float32"),
    )
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        logger.info("Applied LoRA adapter %s", adapter)
    return model.eval(), load_processor(base_model)


def fingerprint(path_or_name: str | None) -> str:
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
    base_model: str, adapter: str | None, config: GenerationConfig, model_params: dict[str, Any]
) -> str:
    """What a stored response depends on: weights, adapter, decoding, prompt and quantization.

    Responses stored under another key are stale and answered again.
    """
    payload = {
        "base_model": fingerprint(base_model),
        "adapter": fingerprint(adapter),
        "generation": {k: v for k, v in asdict(config).items() if k != "cpu_threads"},
        "system_prompt": SYSTEM_PROMPT,
        "quantization": model_params.get("quantization"),
        "dtype": model_params.get("dtype"),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
    tokenizer = processor.tokenizer
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


def generate_responses(
    model: Any,
    processor: Any,
    questions: pd.DataFrame,
    config: GenerationConfig,
    *,
    progress: bool = True,
    description: str = "answering",
) -> Iterator[pd.DataFrame]:
    """Answer ``questions`` (columns ``id``, ``question``, ``image``) batch by batch.

    Yields one DataFrame per batch with :data:`RESPONSE_COLUMNS` but ``generation_key``:
    ``response`` (decoded new tokens, special tokens dropped), ``prompt_tokens``,
    ``response_tokens``, ``finished`` (the model stopped before ``max_new_tokens``) and
    ``seconds`` (the batch's wall time divided among its questions).
    """
    from tqdm.auto import tqdm

    tokenizer = processor.tokenizer
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
    bar = tqdm(total=len(questions), desc=description, unit="question", disable=not progress)
    threads = torch.get_num_threads()
    if config.cpu_threads and device.type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        for batch in batches(questions, config.batch_size):
            started = time.perf_counter()
            texts = [
                prompt_text(processor, row.question, row.image, SYSTEM_PROMPT, config.system_role)
                for row in batch.itertuples()
            ]
            images = [prompt_images(row.image) for row in batch.itertuples()]
            inputs = processor(
                text=texts,
                images=images if all(images) else None,
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
            yield pd.DataFrame(rows, columns=list(RESPONSE_COLUMNS[:-1]))
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        torch.set_num_threads(threads)
