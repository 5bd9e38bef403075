"""The training's distributed workers: GRPO data-parallel (DDP), one process per GPU.

Started by ``hle_reasoning.modeling.distributed.run_workers`` from the training node (never by Kedro):
every worker joins the process group and runs the same ``train_grpo``, which shares the global
batch between them; rank 0 logs each step's metrics live into the node's MLflow run (by run id:
the workers start and end no run), saves the adapter to a folder the node gave it and returns
what the node records (histories, summary, trainer settings). The other ranks log nothing, and
no worker touches the catalog.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hle_reasoning import tracking
from hle_reasoning.config import DistributedConfig, ModelConfig, TrainingConfig
from hle_reasoning.modeling import distributed

if TYPE_CHECKING:
    from hle_reasoning.modeling import training


@dataclass(frozen=True)
class TrainTask:
    """What every worker trains on (picklable: it crosses the process spawn)."""

    base_model: str
    questions: pd.DataFrame
    model: ModelConfig
    training: TrainingConfig
    adapter_dir: str
    live_run: tracking.RunRef | None = None  # the node's MLflow run, for rank 0's step metrics


def train_share(task: TrainTask) -> dict[str, Any] | None:
    """This worker's part of the data-parallel run; rank 0 returns the run's record."""
    from hle_reasoning.modeling import training  # torch, transformers, trl: when it trains

    state = distributed.init_worker(task.training.cpu_threads)
    result = training.train_grpo(
        task.base_model,
        task.questions,
        task.model,
        task.training,
        live_run=task.live_run if state.is_main_process else None,
    )
    if not state.is_main_process:
        return None
    result.model.save_pretrained(task.adapter_dir)
    return {
        "history": result.history,
        "summary": result.summary,
        "params": result.params,
        "completions": result.completions,
    }


class SavedAdapter:
    """A LoRA adapter that rank 0 saved to a temporary folder; ``save_pretrained`` copies it.

    The catalog's ``LoraAdapterDataset`` saves it like a PEFT model. The folder is removed with
    this object.
    """

    def __init__(self, folder: tempfile.TemporaryDirectory) -> None:
        self._folder = folder

    @property
    def path(self) -> Path:
        return Path(self._folder.name)

    def save_pretrained(self, target: str | Path) -> None:
        shutil.copytree(self.path, target, dirs_exist_ok=True)


def train_distributed(
    scale: DistributedConfig,
    base_model: str,
    questions: pd.DataFrame,
    model: ModelConfig,
    training_config: TrainingConfig,
    live_run: tracking.RunRef | None = None,
) -> training.TrainingResult:
    """``training.train_grpo`` on the workers of ``scale``; rank 0's result. Rank 0 logs each
    step's metrics into ``live_run`` as it trains."""
    folder = tempfile.TemporaryDirectory(prefix="hle-adapter-")
    task = TrainTask(
        base_model=base_model,
        questions=questions,
        model=model,
        training=training_config,
        adapter_dir=folder.name,
        live_run=live_run,
    )
    record = distributed.run_workers(scale, train_share, task)[0]
    from hle_reasoning.modeling.training import TrainingResult

    return TrainingResult(
        model=SavedAdapter(folder),
        completions=record["completions"],
        history=record["history"],
        summary=record["summary"],
        params=record["params"],
    )
