"""The real Llama 3 tokenizer, offline: Meta's ``tokenizer.model`` from the ``llama-models`` wheel.

Meta's wheel (PyPI ``llama-models``) ships the tiktoken BPE file of Llama 3 (128,000 tokens).
transformers' ``TikTokenConverter`` turns it into a fast tokenizer, to which this module gives the
special tokens as the released ``meta-llama/Llama-3.2-11B-Vision-Instruct`` tokenizer has them:
the 256 ids after the BPE (``<|begin_of_text|>`` 128000 ... ``<|reserved_special_token_247|>``
128255, named as in the released tokenizer.json, where Meta's native file names 128005
``<|step_id|>`` and 128011 ``<|image|>``) and ``<|image|>`` added at 128256, the config's
``image_token_index``. bos is added by the post-processor, as the released tokenizer does.

The conversion takes a few seconds; it is done once and cached (``tokenizer_dir``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

IMAGE_TOKEN = "<|image|>"
BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|eot_id|>"  # the Instruct model's tokenizer_config eos (end of turn)
PAD_TOKEN = "<|finetune_right_pad_id|>"
# Meta's pre-tokenizer pattern (llama_models/llama3/tokenizer.py, Tokenizer.pat_str).
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_BASE_TOKENS = 128_000
NUM_RESERVED = 256
# The named special tokens of the released tokenizer (ids 128000 + position); the other slots
# are <|reserved_special_token_N|>, N counting up from 0 in id order.
_NAMED = {
    0: BOS_TOKEN,
    1: "<|end_of_text|>",
    4: PAD_TOKEN,
    6: "<|start_header_id|>",
    7: "<|end_header_id|>",
    8: "<|eom_id|>",
    9: EOS_TOKEN,
    10: "<|python_tag|>",
}
IMAGE_TOKEN_ID = NUM_BASE_TOKENS + NUM_RESERVED  # 128256
# The released generation_config's stop tokens: <|end_of_text|>, <|eom_id|>, <|eot_id|>.
STOP_TOKEN_IDS = (128001, 128008, 128009)
# Bumped when ``convert`` changes what it writes: the cache folder's name holds it.
CACHE_FORMAT = 2


class Llama3TokenizerError(RuntimeError):
    """Meta's tokenizer file cannot be found or converted; the message says what to install."""


def special_tokens() -> list[str]:
    """The 256 special tokens after the BPE, in id order, named as the released tokenizer does."""
    tokens, reserved = [], 0
    for slot in range(NUM_RESERVED):
        if slot in _NAMED:
            tokens.append(_NAMED[slot])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return tokens


def llama_models_version() -> str:
    try:
        return importlib.metadata.version("llama_models")
    except importlib.metadata.PackageNotFoundError:
        raise Llama3TokenizerError(
            "the tiny model's tokenizer is Meta's Llama 3 tokenizer from the llama-models wheel, "
            "which is not installed: pip install -c constraints.txt llama-models==0.3.0 (it is in "
            "the project's dependencies: pip install -r requirements.txt)."
        ) from None


def tokenizer_model_file() -> Path:
    """Meta's ``llama_models/llama3/tokenizer.model``, located without importing the package."""
    llama_models_version()
    spec = importlib.util.find_spec("llama_models")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "llama3" / "tokenizer.model"
    if not path.is_file():
        raise Llama3TokenizerError(f"{path} is missing: reinstall llama-models==0.3.0.")
    return path


def cache_root() -> Path:
    """Where converted tokenizers are kept: ``HLE_CACHE_DIR`` or the user's cache folder."""
    root = os.environ.get("HLE_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hle_reasoning"


def convert(out_dir: str | Path) -> Path:
    """Convert Meta's file to a transformers fast tokenizer saved in ``out_dir``."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(
        vocab_file=str(tokenizer_model_file()),
        pattern=PATTERN,
        extra_special_tokens=special_tokens(),
    ).converted()
    backend.add_special_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)])
    bos_id = backend.token_to_id(BOS_TOKEN)
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN}:0 $A:0",
                pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
        # The released config says true, which transformers 5 ignores for BPE tokenizers (with
        # a warning at every load): the same behaviour, without the warning.
        clean_up_tokenization_spaces=False,
    )
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != IMAGE_TOKEN_ID or len(tokenizer) != (
        IMAGE_TOKEN_ID + 1
    ):
        raise Llama3TokenizerError(
            f"converting {tokenizer_model_file()} gave {len(tokenizer)} tokens and <|image|> at "
            f"{tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}; expected {IMAGE_TOKEN_ID + 1} and "
            f"{IMAGE_TOKEN_ID}: reinstall llama-models==0.3.0."
        )
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def tokenizer_dir() -> Path:
    """The converted tokenizer's folder, made on first use (written whole: a temporary folder
    renamed into place, so concurrent first uses never see half a tokenizer)."""
    target = (
        cache_root() / f"llama3-tokenizer-v{CACHE_FORMAT}-llama-models-{llama_models_version()}"
    )
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llama3-tokenizer-", dir=target.parent))
    try:
        convert(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / "tokenizer.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
