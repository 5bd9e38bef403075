"""Train the tiny model's byte-level BPE tokenizer (bundled in hle_reasoning/assets/tiny_tokenizer)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hle_reasoning.hle.data.prompts import SYSTEM_PROMPT
from hle_reasoning.modeling.models import SPECIAL_TOKENS

# Response-format text the tokenizer should see besides the questions.
EXTRA_TEXT = [
    SYSTEM_PROMPT,
    "Explanation: The result follows from the definition.\nAnswer: 42\nConfidence: 85%",
    "Explanation: By symmetry the two cases agree.\nExact Answer: \\frac{1}{2}\nConfidence: 60%",
    "Answer: A\nAnswer: B\nAnswer: C\nAnswer: D\nAnswer: E\nConfidence: 100%\nConfidence: 0%",
]


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A deterministic byte-level BPE tokenizer with Llama 3's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*EXTRA_TEXT, *texts], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        model_max_length=4096,
    )


def write_tiny_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 2048) -> Path:
    out_dir = Path(out_dir)
    train_tiny_tokenizer(texts, vocab_size).save_pretrained(out_dir)
    return out_dir
