"""The ``distributed`` block (conf/base/parameters.yml): how many worker processes, on how many
machines, the heavy nodes spread their work over (accelerate's names).

The block's checks read its values and the accelerate config file it names; what accelerate's
launcher makes of that file (and refuses) is ``hle_reasoning.modeling.distributed``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from hle_reasoning.config.parsing import Block, at_least, check


class DistributedConfig(Block):
    """How the work of a node is spread (``distributed`` in conf/base/parameters.yml).

    The names are accelerate's (``accelerate launch --num_processes ...``): ``num_processes`` is
    the total number of worker processes over all machines (one per GPU), ``num_machines`` the
    machines, ``machine_rank`` this machine's rank (0 owns MLflow and the outputs),
    ``main_process_ip``/``main_process_port`` where the workers meet (machine 0's address;
    ``None`` on one machine: localhost and a free port). ``config_file``: an accelerate config
    (``accelerate config``) for what this block does not name; it must agree with the block.
    ``timeout_s``: the process-group and rendezvous timeout: a worker that stops answering
    collectives (a lost machine) ends the run with an error after this long instead of a hang.
    """

    PATH: ClassVar[str] = "distributed"
    num_processes: Annotated[int, at_least(1, "an integer")] = 1
    num_machines: Annotated[int, at_least(1, "an integer")] = 1
    machine_rank: Annotated[int, at_least(0, "an integer")] = 0
    main_process_ip: str | None = None
    main_process_port: Annotated[
        int | None,
        check(lambda v: 1 <= v <= 65535, "set a port in 1..65535"),
    ] = None
    config_file: str | None = None
    timeout_s: Annotated[float, check(lambda v: v > 0, "it must be > 0")] = 600.0

    def cross_checks(self) -> list[str]:
        problems: list[str] = []
        if self.num_processes % self.num_machines:
            problems.append(
                f"distributed.num_processes {self.num_processes} (all machines together, as in "
                f"accelerate) cannot be split evenly over num_machines {self.num_machines}; use a "
                "multiple of num_machines."
            )
        if self.machine_rank >= self.num_machines:
            problems.append(
                f"distributed.machine_rank {self.machine_rank} must be below num_machines "
                f"{self.num_machines} (ranks count from 0)."
            )
        if self.num_machines > 1:
            if not self.main_process_ip:
                problems.append(
                    "distributed.num_machines > 1 needs distributed.main_process_ip: the address "
                    "of the machine with machine_rank 0, the same on every machine."
                )
            if self.main_process_port is None:
                problems.append(
                    "distributed.num_machines > 1 needs distributed.main_process_port: a free port "
                    "on the machine with machine_rank 0, the same on every machine (e.g. 29500)."
                )
        if self.config_file is not None:
            problems += _config_file_problems(self)
        return problems

    @property
    def enabled(self) -> bool:
        """Whether work is spread over worker processes at all (False: today's single process)."""
        return self.num_processes > 1 or self.num_machines > 1

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines

    @property
    def is_main_machine(self) -> bool:
        return self.machine_rank == 0


def _config_file_problems(config: DistributedConfig) -> list[str]:
    path = Path(str(config.config_file))
    if not path.is_file():
        return [
            f"distributed.config_file {str(path)!r} does not exist; write one with `accelerate "
            "config --config_file PATH`, or set config_file: null."
        ]
    try:
        from accelerate.commands.config.config_args import load_config_from_file

        loaded = load_config_from_file(str(path))
    except Exception as error:  # accelerate's own parser decides what a config file is
        return [f"distributed.config_file {str(path)!r} is not an accelerate config: {error}"]
    problems = []
    for name in ("num_processes", "num_machines", "machine_rank", "main_process_port"):
        value = getattr(loaded, name, None)
        if value not in (None, getattr(config, name)) and not (
            name == "num_processes" and value == -1
        ):
            problems.append(
                f"distributed.config_file {str(path)!r} sets {name}: {value} but the distributed "
                f"block says {getattr(config, name)}; make them the same or remove the line from "
                "the file."
            )
    return problems


def world_size_problems(grpo: Any, world_size: int) -> list[str]:
    """Why ``world_size`` processes cannot share training's global batch (empty if they can).

    ``grpo``: the ``training.grpo`` block. The proposal's batch (``completions_per_step``: 2
    prompts x 2 completions) is the global batch of an optimizer step whatever the number of
    processes. Every process must hold an equal share, and a share must be completions of one
    prompt only (all of them or an equal part): a process whose batch mixed image and text
    questions would score them in two forward passes while another process makes one, and DDP's
    collectives would stop matching (a deadlock: DDP's all-reduce of the two passes' gradients
    waits for a call the other process never makes). With one prompt per process, every process
    makes the same calls in the same order.
    """
    if world_size <= 1:
        return []
    total, n_gen = grpo.completions_per_step, grpo.num_generations
    per_process, rest = divmod(total, world_size)
    if rest or per_process < 1:
        return [
            f"distributed.num_processes {world_size} cannot share training's global batch of "
            f"{total} completions per step (training.grpo.batch_size {grpo.batch_size} "
            f"{grpo.batch_size_unit} x {n_gen} generations) equally; use a number of processes "
            f"that divides {total}."
        ]
    if n_gen % per_process:
        return [
            f"distributed.num_processes {world_size} gives each process {per_process} "
            f"completions per step, more than one prompt's {n_gen} (or not a part of them): a "
            "process's batch must hold one prompt only, so that no process mixes image and text "
            f"questions; use {total // n_gen} processes or more (a number that divides {total})."
        ]
    return []
