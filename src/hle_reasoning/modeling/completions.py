"""What GRPO generates, and what it got for it: the completions table and the learning signal.

TRL logs its completions table to Weights & Biases and trackio only. Here every reward call is
seen through the reward functions themselves (``RecordingReward`` wraps each one: TRL's public
reward interface, the same in Mllama's trainer and TRL's text and vision paths), and
``training_callbacks.CompletionsCallback`` (a ``transformers.TrainerCallback``) turns a step's calls into rows at
each log (``logging_steps`` is 1):

* one row per completion: the step, the question id, whether it had an image, the prompt
  (its question text, shortened), the completion, its length in tokens, whether it was cut at
  ``max_completion_length`` (no end-of-sequence token: TRL's ``completions/clipped_ratio``), each
  reward function's value, the weighted reward, and the advantage as TRL computes it
  (``scale_rewards`` group / batch / none), with its group's index and whether the group's
  rewards were all equal (no learning signal);
* two figures per step, computed on every completion of the step (not only the sampled rows),
  added to the step's entry of the trainer's ``log_history`` so that they reach MLflow live
  (``training.no_signal_group_share``, ``training.cut_share``), the history table, the curves and
  the checkpoints: the share of groups whose rewards are all equal (TRL's
  ``frac_reward_zero_std``) and the share of completions cut;
* a warning, once, when more than ``warn_no_signal_share`` of the steps so far had no signal at
  all, naming the likely cause and the parameter to change.

The rows (all of a step, or its first ``rows_per_step``) go live into the training run's MLflow
table ``training/completions.json`` (``mlflow.log_table``: the UI's artifact view shows it) and
into each checkpoint (``completions.jsonl``), from which a resumed run starts again: the rows up
to the checkpoint's step, then the new ones. Under DDP every rank records its share; the rows
are gathered at each log (``gather_object``, a collective that every rank reaches in
``on_log``), every rank computes the same figures, and only the world's process 0 keeps rows,
logs them and writes them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The MLflow artifact of the table, in the training run.
ARTIFACT_FILE = "training/completions.json"
# The rows so far, in each checkpoint folder (a resumed run starts from them).
CHECKPOINT_FILE = "completions.jsonl"
# Per-step figures, added to the trainer's log_history (training_callbacks.HISTORY_KEYS).
NO_SIGNAL, CUT = "no_signal_group_share", "cut_share"
# The table's columns before the per-reward ones (reward_<name>).
COLUMNS = (
    "step",
    "id",
    "has_image",
    "prompt",
    "completion",
    "completion_tokens",
    "cut",
    "reward",
    "advantage",
    "group",
    "no_signal",
)
REWARD_PREFIX = "reward_"
# TRL's guard against a zero standard deviation (grpo_trainer: std + 1e-4).
STD_EPSILON = 1e-4


def shorten(text: str, limit: int, keep: str = "end") -> str:
    """``text`` on one line, cut to ``limit`` characters: its ``end`` kept (``...`` before it)
    or its ``start`` (``...`` after it)."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    if keep == "start":
        return flat[: max(limit - 3, 0)] + "..."
    return "..." + flat[len(flat) - max(limit - 3, 0) :]


def prompt_text(prompt: Any) -> str:
    """The text of a prompt as TRL passes it: the last user turn of a chat, or the string."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        turn = (users or [m for m in prompt if isinstance(m, dict)] or [{}])[-1]
        content = turn.get("content", "")
        if isinstance(content, list):
            return " ".join(
                str(part.get("text") or "") for part in content if isinstance(part, dict)
            ).strip()
        return str(content)
    return str(prompt)


class CompletionRecorder:
    """The reward calls of this process since the last log: per call, the rows' fields and each
    reward function's values (filled by ``RecordingReward``)."""

    def __init__(self, reward_names: Sequence[str], prompt_chars: int = 160) -> None:
        self.reward_names = list(reward_names)
        self.prompt_chars = prompt_chars
        self.calls: list[dict[str, Any]] = []

    def record(self, index: int, values: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Reward function ``index``'s ``values`` for the batch TRL passed as ``kwargs``; the
        first function of a batch opens a call with the batch's rows."""
        if index == 0 or not self.calls or index in self.calls[-1]["rewards"]:
            from hle_reasoning.hle.judge.rewards import completion_text

            completions = kwargs.get("completions") or []
            n = len(completions)
            ids = kwargs.get("completion_ids") or [[] for _ in range(n)]
            images = kwargs.get("images") or kwargs.get("image") or [None] * n
            self.calls.append(
                {
                    "id": [str(i) for i in kwargs.get("id") or [""] * n],
                    "has_image": [bool(i) for i in images],
                    "prompt": [
                        shorten(prompt_text(p), self.prompt_chars)
                        for p in kwargs.get("prompts") or [""] * n
                    ],
                    "completion": [completion_text(c) for c in completions],
                    "completion_tokens": [len(i) for i in ids],
                    "last_token": [int(i[-1]) if len(i) else None for i in ids],
                    "rewards": {},
                }
            )
        self.calls[-1]["rewards"][index] = [_number(v) for v in values]

    def take(self) -> list[dict[str, Any]]:
        """The calls recorded since the last ``take``."""
        calls, self.calls = self.calls, []
        return calls


def _number(value: Any) -> float:
    """A reward as a float (TRL's None, a reward that does not apply, as NaN)."""
    return math.nan if value is None else float(value)


class RecordingReward:
    """A reward function that records its values (and its batch) in a ``CompletionRecorder``.

    Called exactly as TRL calls the wrapped function; returns its values unchanged and keeps its
    ``__name__`` (TRL's metric names: ``rewards/<name>/mean``).
    """

    def __init__(self, func: Callable[..., Any], index: int, recorder: CompletionRecorder):
        self.func = func
        self.index = index
        self.recorder = recorder
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values = self.func(*args, **kwargs)
        self.recorder.record(self.index, values, kwargs)
        return values


def recording(funcs: Sequence[Callable[..., Any]], prompt_chars: int = 160):
    """``funcs`` wrapped to record their calls, and the recorder they share."""
    names = [getattr(f, "__name__", type(f).__name__) for f in funcs]
    recorder = CompletionRecorder(names, prompt_chars)
    return [RecordingReward(f, i, recorder) for i, f in enumerate(funcs)], recorder


def score_rows(
    calls: Sequence[dict[str, Any]],
    *,
    reward_names: Sequence[str],
    weights: Sequence[float],
    num_generations: int,
    scale_rewards: str,
    end_token_ids: Sequence[int],
    step: int,
) -> list[dict[str, Any]]:
    """The rows of a step's reward calls (each already gathered over the processes, in rank
    order): weighted reward, advantage and group as TRL's ``sum_then_normalize`` computes them."""
    ends = set(end_token_ids)
    rows: list[dict[str, Any]] = []
    group_base = 0
    for call in calls:
        n = len(call["completion"])
        per_func = [call["rewards"].get(i, [math.nan] * n) for i in range(len(reward_names))]
        weighted = []
        for r in range(n):
            values = [per_func[i][r] for i in range(len(reward_names))]
            if all(math.isnan(v) for v in values):
                weighted.append(math.nan)  # unscorable: no reward, advantage 0 (TRL)
            else:
                weighted.append(
                    sum(w * v for w, v in zip(weights, values, strict=True) if not math.isnan(v))
                )
        batch_std = _nanstd(weighted)
        for g in range(0, n, num_generations):
            group = weighted[g : g + num_generations]
            mean, group_std = _nanmean(group), _nanstd(group)
            std = batch_std if scale_rewards == "batch" else group_std
            # All rewards of the group equal: every advantage is 0, whatever the scaling (TRL's
            # frac_reward_zero_std, which under "batch" looks at the batch's std instead).
            no_signal = not group_std > 1e-8
            for r in range(g, min(g + num_generations, n)):
                advantage = weighted[r] - mean
                if scale_rewards != "none":
                    advantage = advantage / (std + STD_EPSILON)
                if math.isnan(advantage):
                    advantage = 0.0
                last = call["last_token"][r]
                rows.append(
                    {
                        "step": step,
                        "id": call["id"][r],
                        "has_image": call["has_image"][r],
                        "prompt": call["prompt"][r],
                        "completion": call["completion"][r],
                        "completion_tokens": call["completion_tokens"][r],
                        "cut": last is None or last not in ends,
                        "reward": weighted[r],
                        "advantage": advantage,
                        "group": group_base + g // num_generations,
                        "no_signal": no_signal,
                        **{
                            f"{REWARD_PREFIX}{name}": per_func[i][r]
                            for i, name in enumerate(reward_names)
                        },
                    }
                )
        group_base += math.ceil(n / num_generations)
    return rows


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _nanstd(values: Sequence[float]) -> float:
    """Bessel-corrected standard deviation over the non-NaN values (TRL's ``nanstd``)."""
    kept = [v for v in values if not math.isnan(v)]
    if len(kept) < 2:
        return math.nan
    mean = sum(kept) / len(kept)
    return math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))


def step_figures(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The share of groups with all rewards equal and the share of completions cut."""
    if not rows:
        return {}
    groups = {row["group"]: row["no_signal"] for row in rows}
    return {
        NO_SIGNAL: sum(groups.values()) / len(groups),
        CUT: sum(bool(row["cut"]) for row in rows) / len(rows),
    }


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a completions file (JSON lines); a line cut short by a kill is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as JSON lines at ``path``, written whole (a temporary file renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        "".join(
            json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False) + "\n"
            for row in rows
        ),
        encoding="utf-8",
    )
    tmp.replace(path)


def table_frame(rows: Sequence[dict[str, Any]], reward_names: Sequence[str] = ()):
    """Rows as a DataFrame with the table's columns in order (an empty one has them too)."""
    import pandas as pd

    rewards = [f"{REWARD_PREFIX}{n}" for n in reward_names]
    columns = list(COLUMNS) + rewards
    for row in rows:
        columns += [k for k in row if k not in columns]
    return pd.DataFrame(list(rows), columns=columns)


_ROW_FIELDS = ("id", "has_image", "prompt", "completion", "completion_tokens", "last_token")


def merge_calls(every: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each process's reward calls (``every[rank]``) merged call by call, in rank order: the
    global batch as TRL gathers its rewards."""
    merged = []
    for parts in zip(*every, strict=True):
        merged.append(
            {
                **{key: [v for part in parts for v in part[key]] for key in _ROW_FIELDS},
                "rewards": {
                    i: [v for part in parts for v in part["rewards"].get(i, [])]
                    for i in parts[0]["rewards"]
                },
            }
        )
    return merged


def report_markdown(frame, per_step: int = 2, chars: int = 120) -> str:
    """The report's training section: the first ``per_step`` completions of the first and the
    last step, with their rewards and advantages ("" for an empty table)."""
    if frame is None or frame.empty or per_step < 1:
        return ""
    steps = sorted({int(s) for s in frame["step"]})
    shown = [steps[0]] if len(steps) == 1 else [steps[0], steps[-1]]
    rewards = [c for c in frame.columns if c.startswith(REWARD_PREFIX)]
    parts = [
        "## Training: what GRPO generated",
        "",
        f"The first {per_step} completions of step {shown[0]}"
        + (f" and of the last step, {shown[1]}" if len(shown) > 1 else "")
        + f" (of {len(frame)} rows kept over {len(steps)} steps: "
        "data/08_reporting/training_completions.jsonl, and the training run's MLflow table "
        f"`{ARTIFACT_FILE}`). A completion is cut when it reached the length limit; the "
        "advantage is GRPO's, within the prompt's group. Prompts show their end (what the "
        "prompt cap keeps), completions their beginning.",
        "",
        "| step | question | image | prompt (end) | completion | cut | "
        + " | ".join(c.removeprefix(REWARD_PREFIX) for c in rewards)
        + " | reward | advantage |",
        "|---:|---|---|---|---|---|" + "---:|" * (len(rewards) + 2),
    ]
    for step in shown:
        for row in frame[frame["step"] == step].head(per_step).to_dict(orient="records"):
            cells = [
                str(step),
                _cell(row["id"], 40),
                "yes" if row["has_image"] else "no",
                _cell(row["prompt"], 60),
                _cell(row["completion"], chars, keep="start"),
                "yes" if row["cut"] else "no",
                *[_figure(row[c]) for c in rewards],
                _figure(row["reward"]),
                _figure(row["advantage"]),
            ]
            parts.append("| " + " | ".join(cells) + " |")
    return "\n".join(parts)


def _cell(text: Any, limit: int, keep: str = "end") -> str:
    """Text for a Markdown table cell: one line, pipes and backticks escaped, shortened."""
    short = shorten("" if text is None else str(text), limit, keep)
    return short.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`") or " "


def _figure(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):+.3f}" if value < 0 else f"{float(value):.3f}"
