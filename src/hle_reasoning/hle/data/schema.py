"""The cais/hle record schema: loading exports, validating them and decoding their images."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from hle_reasoning.hle.data import images

logger = logging.getLogger(__name__)

# A question longer than this is no exam question (a pasted file?): about 25k tokens, several
# times HLE's longest questions.
LONG_QUESTION_CHARS = 100_000

REQUIRED_COLUMNS = ("id", "question", "image", "answer", "answer_type", "category")
# Kept after validation when present; the rest (image_preview, rationale_image, canary, ...)
# is dropped from the working copy, never from the source file.
OPTIONAL_COLUMNS = ("raw_subject", "author_name", "rationale")
ANSWER_TYPES = ("exactMatch", "multipleChoice")
# The eight categories of the 2,700-question release, in the order the HLE paper lists them.
CATEGORIES = (
    "Math",
    "Biology/Medicine",
    "Computer Science/AI",
    "Other",
    "Physics",
    "Humanities/Social Science",
    "Chemistry",
    "Engineering",
)
HUB_DATASET_ID = "cais/hle"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_LISTED_PROBLEMS = 20


class HLEDataError(ValueError):
    """An HLE export that cannot be used; the message names the file, rows and columns."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row of an export."""

    row_id: str
    column: str
    message: str

    def __str__(self) -> str:
        if not self.column:  # a line of the file that holds no row (not UTF-8, not JSON)
            return f"{self.row_id}: {self.message}"
        return f"id {self.row_id!r}, column {self.column!r}: {self.message}"


def _raise(source: str, problems: list, what: str = "problem(s) in the HLE export") -> None:
    """One HLEDataError listing the first MAX_LISTED_PROBLEMS ``problems`` of ``source``."""
    shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise HLEDataError(
        f"{source}: {len(problems)} {what}; fix them at the source "
        f"(the file is never modified by this project) and run again:\n{shown}{tail}"
    )


def is_hub_id(name: str) -> bool:
    """True when ``name`` is a Hugging Face repository id (``owner/name``: the HLE dataset or the
    model) rather than a local file or directory or the tiny model."""
    return name == HUB_DATASET_ID or (
        name.count("/") == 1
        and Path(name).suffix.lower() not in LOCAL_SUFFIXES
        and not Path(name).exists()
        and not name.startswith((".", "/", "~"))
    )


def read_export(path: str | Path, *, collect: bool = False) -> pd.DataFrame:
    """Read a local ``.jsonl``, ``.json`` or ``.parquet`` export without coercing any value.

    Whatever the bytes, the result is a frame or one :class:`HLEDataError` naming the file and
    each bad line (bytes that are not UTF-8, a line that is not a JSON object), collected.
    ``collect``: the bad lines of a ``.jsonl`` are returned in ``frame.attrs["line_problems"]``
    instead, for :func:`validate_hle` to list with the rows' problems in one message."""
    path = Path(path)
    if not path.exists():
        raise HLEDataError(
            f"{path}: no such file. Pass an existing .jsonl, .json or .parquet export "
            f"(--params hle_source=PATH), {HUB_DATASET_ID!r} for the hub, or leave it out "
            "for the bundled sample."
        )
    if path.is_dir():
        raise HLEDataError(
            f"{path}: a folder, not an export file; pass the .jsonl/.json/.parquet file."
        )
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        return _read_jsonl(path, collect)
    if suffix == ".json":
        return _read_json(path)
    raise HLEDataError(
        f"{path}: unsupported file type {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}."
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise HLEDataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); export it again, or "
            "use a .jsonl export."
        ) from None


def _read_jsonl(path: Path, collect: bool = False) -> pd.DataFrame:
    records, problems = [], []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(
                    f"line {lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); save the export as UTF-8"
                )
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                problems.append(f"line {lineno}: not valid JSON ({what})")
                continue
            if not isinstance(record, dict):
                problems.append(
                    f"line {lineno}: a JSON {type(record).__name__}, not an object with the "
                    "question's fields"
                )
                continue
            records.append(record)
    if problems and not (collect and records):
        _raise_lines(path, problems)
    frame = pd.DataFrame.from_records(records)
    frame.attrs["line_problems"] = problems
    return frame


def _read_json(path: Path) -> pd.DataFrame:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise HLEDataError(f"{path}, line {line}: not UTF-8; save the export as UTF-8.") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HLEDataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    except RecursionError:
        raise HLEDataError(f"{path}: not valid JSON (nested too deeply).") from None
    if isinstance(payload, dict):
        # Column-oriented ({"id": [...], ...}) or {"data": [...]} exports.
        payload = payload.get("data", payload)
    try:
        frame = pd.DataFrame(payload)
    except (ValueError, TypeError) as exc:
        raise HLEDataError(
            f"{path}: not an HLE export (a list of question objects, or columns of equal "
            f"length): {exc}."
        ) from None
    if isinstance(payload, list) and not all(isinstance(r, dict) for r in payload):
        raise HLEDataError(f"{path}: not an HLE export: every item must be a question object.")
    return frame


def _raise_lines(path: Path, problems: list[str]) -> None:
    if len(problems) == 1:
        raise HLEDataError(
            f"{path}, {problems[0]}. Fix it at the source (the file is never modified by this "
            "project) and run again."
        )
    _raise(str(path), problems, "line(s) cannot be read")


def read_hub(dataset_id: str = HUB_DATASET_ID, split: str = "test") -> pd.DataFrame:
    """Download the gated HLE release from the Hugging Face hub (needs a token: ``HF_TOKEN`` or
    the one ``hf auth login`` saved)."""
    from hle_reasoning import hub

    token = hub.token()
    if not token:
        raise HLEDataError(
            f"{dataset_id}: the dataset is gated on the Hugging Face hub and HF_TOKEN is not set "
            f"(nor a token saved by `hf auth login`). Accept its terms at "
            f"https://huggingface.co/datasets/{dataset_id}, then {hub.LOGIN} and run again (or "
            "pass a local export with --params hle_source=PATH)."
        )
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split, token=token)
    except Exception as exc:  # the hub client raises many unrelated types
        raise HLEDataError(
            f"{dataset_id}: could not load split {split!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Check the network, that HF_TOKEN has access to "
            "the gated dataset, or pass a local export with --params hle_source=PATH."
        ) from exc
    keep = [c for c in ds.column_names if c not in ("image_preview", "rationale_image")]
    return ds.select_columns(keep).to_pandas()


def answer_to_text(value: object) -> str | None:
    """HLE answers are strings, but real exports hold some as JSON numbers or booleans."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return None


def decode_image(data_uri: str) -> bytes:
    """Bytes of an HLE image given as ``data:image/<fmt>;base64,<payload>``."""
    return images.decode_image(data_uri)


def load_image(data_uri: str, question_id: object = None) -> Image.Image:
    """A decoded RGB PIL image from an HLE data URI, bounded by ``max_image_pixels``
    (:mod:`hle_reasoning.hle.data.images`). One that cannot be used raises
    :class:`HLEDataError` naming ``question_id`` and the column (an
    :class:`~images.ImageProblem` without an id)."""
    try:
        return images.open_image(data_uri)
    except images.ImageProblem as exc:
        if question_id is None:
            raise
        raise HLEDataError(
            f"question {str(question_id)!r}, column 'image': {exc}. Validation refuses such an "
            "image; rerun `kedro run --pipelines data_processing` with the export fixed."
        ) from None


def has_image(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_hle(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check an HLE export and return a clean copy; raise ``HLEDataError`` naming every problem.

    The input frame is never modified. The copy keeps the required and optional columns; answers
    stored as JSON numbers or booleans become strings; a missing image is normalised to ``""``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise HLEDataError(
            f"{source}: missing required column(s) {missing}; an HLE export needs "
            f"{list(REQUIRED_COLUMNS)} (the cais/hle schema). Found {list(df.columns)}."
        )
    if df.empty:
        raise HLEDataError(f"{source}: the export holds no questions.")

    keep = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in df.columns)]
    out = df[keep].copy()
    problems = [
        Problem(line.partition(":")[0], "", line.partition(":")[2].strip())
        for line in df.attrs.get("line_problems", [])
    ]
    ids = out["id"]
    for pos, raw_id in enumerate(ids):
        if not isinstance(raw_id, str) or not raw_id.strip():
            problems.append(Problem(f"<row {pos}>", "id", f"empty or not a string ({raw_id!r})"))
    keys = ids.map(lambda v: v if isinstance(v, str) else f"<{type(v).__name__} {v!r:.40}>")
    dupes = keys[keys.duplicated(keep=False)]
    for dup in sorted(set(dupes)):
        n = int((keys == dup).sum())
        problems.append(Problem(dup, "id", f"appears {n} times; ids must be unique"))

    answers, kept_images = [], []
    for row in out.itertuples(index=False):
        rid = row.id if isinstance(row.id, str) else f"<{type(row.id).__name__} {row.id!r:.40}>"
        if not isinstance(row.question, str) or not row.question.strip():
            problems.append(Problem(rid, "question", "empty or not a string"))
        text = answer_to_text(row.answer)
        if text is None or not text.strip():
            problems.append(
                Problem(rid, "answer", f"empty or not a string/number ({row.answer!r:.60})")
            )
        answers.append(text)
        if not isinstance(row.answer_type, str) or row.answer_type not in ANSWER_TYPES:
            problems.append(
                Problem(
                    rid, "answer_type", f"{row.answer_type!r} is not one of {list(ANSWER_TYPES)}"
                )
            )
        if not isinstance(row.category, str) or not row.category.strip():
            problems.append(Problem(rid, "category", "empty or not a string"))
        image = row.image
        if image is None or (isinstance(image, float) and math.isnan(image)):
            image = ""
        if not isinstance(image, str):
            problems.append(
                Problem(rid, "image", f"expected a data URI string, got {type(image).__name__}")
            )
        elif image.strip():
            try:
                images.check_image(image)
            except images.ImageProblem as exc:
                problems.append(Problem(rid, "image", str(exc)))
        kept_images.append(image if isinstance(image, str) else "")

    if problems:
        _raise(source, problems)
    out["answer"] = answers
    out["image"] = kept_images
    unknown = sorted(set(out["category"]) - set(CATEGORIES))
    if unknown:
        logger.warning("%s: categories outside the HLE release's eight: %s", source, unknown)
    lengths = out["question"].str.len()
    long = out.loc[lengths > LONG_QUESTION_CHARS, "id"].astype(str).tolist()
    if long:
        logger.warning(
            "%s: %d question(s) longer than %d characters (the longest %d), more than a model's "
            "context holds: evaluation cuts their prompts to fit and says so (ids %s)",
            source,
            len(long),
            LONG_QUESTION_CHARS,
            int(lengths.max()),
            ", ".join(long[:10]),
        )
    return out.reset_index(drop=True)
