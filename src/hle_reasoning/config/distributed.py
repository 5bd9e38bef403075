"""The ``distributed`` block (conf/base/parameters.yml): how many worker processes, on how many
machines, the heavy nodes spread their work over (accelerate's names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hle_reasoning.config.parsing import Block, at_least, check


@dataclass(frozen=True, kw_only=True)
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

    PATH = "distributed"
    num_processes: int = field(default=1, metadata=at_least(1, "an integer"))
    num_machines: int = field(default=1, metadata=at_least(1, "an integer"))
    machine_rank: int = field(default=0, metadata=at_least(0, "an integer"))
    main_process_ip: str | None = None
    main_process_port: int | None = field(
        default=None, metadata=check(lambda v: 1 <= v <= 65535, "set a port in 1..65535")
    )
    config_file: str | None = None
    timeout_s: float = field(default=600.0, metadata=check(lambda v: v > 0, "it must be > 0"))

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


# What a worker may take from an accelerate config file: accelerate's own settings (mixed
# precision, FSDP, DeepSpeed, Megatron-LM, parallelism) and the GPUs it may see. The launcher's
# rendezvous (MASTER_ADDR, ...) and the thread count are this project's.
_WORKER_VARIABLES = ("ACCELERATE_", "FSDP_", "MEGATRON_LM_", "PARALLELISM_CONFIG_")
_SUPPORTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")


@dataclass(frozen=True)
class AccelerateLaunch:
    """What ``accelerate launch --config_file FILE`` would set up for this block's workers.

    ``distributed_type``: accelerate's name for the engine (``MULTI_GPU`` is DDP, ``FSDP``,
    ``DEEPSPEED``, ...); ``mixed_precision`` as the file says (``no`` when it says nothing);
    ``environment``: the variables accelerate's launcher would give the workers (its
    ``ACCELERATE_*``, ``FSDP_*``, ... and ``CUDA_VISIBLE_DEVICES`` for ``gpu_ids``). The
    trainer's ``Accelerator`` reads them in each worker, as under ``accelerate launch``.
    """

    distributed_type: str
    mixed_precision: str
    environment: dict[str, str]

    @property
    def shards_parameters(self) -> bool:
        """FSDP or DeepSpeed ZeRO-3: the model's weights are split over the processes."""
        zero_stage = self.environment.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        return self.distributed_type == "FSDP" or (
            self.distributed_type == "DEEPSPEED" and zero_stage == "3"
        )

    @property
    def needs_gpus(self) -> bool:
        """accelerate runs FSDP and DeepSpeed on accelerators only (no CPU backend)."""
        return self.distributed_type in ("FSDP", "DEEPSPEED")


def accelerate_problems(
    config: DistributedConfig, training: Any = None, model: Any = None, *, gpus: bool
) -> list[str]:
    """Why ``config.config_file`` cannot train this ``training``/``model`` setup on this machine
    (empty if it can, or when there is no file). ``gpus``: whether torch sees CUDA GPUs.

    The block's own checks (the file exists, agrees with the block, is one accelerate and this
    project can launch) come with the block; these need the other blocks or the machine.
    """
    if config.config_file is None:
        return []
    try:
        launch = accelerate_launch(config)
    except ValueError:
        return []  # already listed by the block's own checks
    assert launch is not None
    path, kind = config.config_file, launch.distributed_type
    problems = []
    if launch.needs_gpus and not gpus:
        problems.append(
            f"distributed.config_file {path!r} sets distributed_type: {kind}, which accelerate "
            "runs on GPUs only, and torch sees no CUDA GPU: on CPUs leave config_file null "
            "(data-parallel over gloo), or run on GPUs."
        )
    if training is not None and launch.mixed_precision in ("fp16", "fp8") and training.grpo.bf16:
        problems.append(
            f"distributed.config_file {path!r} sets mixed_precision: {launch.mixed_precision} "
            "but training.grpo.bf16 is true, which the trainer would use instead: set "
            f"training.grpo.bf16=false to train in {launch.mixed_precision}, or set "
            "mixed_precision: bf16 (or remove it) in the file."
        )
    quantization = getattr(model, "quantization", None)
    if (
        launch.shards_parameters
        and quantization is not None
        and quantization.enabled
        and quantization.quant_storage != quantization.compute_dtype
    ):
        problems.append(
            f"distributed.config_file {path!r} shards the weights ({kind}), which works only on "
            "floating-point tensors, but the 4-bit base is stored as "
            f"model.quantization.quant_storage {quantization.quant_storage}: set "
            f"model.quantization.quant_storage={quantization.compute_dtype} (the compute dtype, "
            "as in FSDP-QLoRA), or model.quantization.enabled=false."
        )
    return problems


def accelerate_launch(config: DistributedConfig) -> AccelerateLaunch | None:
    """``config.config_file`` read by accelerate's own launcher code (None without one).

    The file goes through ``accelerate launch``'s argument parser and validation with this
    block's ``num_processes``, ``num_machines`` and ``machine_rank``, then through the function
    that prepares the workers' environment for its engine (``prepare_multi_gpu_env`` for DDP and
    FSDP, ``prepare_deepspeed_cmd_env``, ``prepare_simple_launcher_cmd_env``), so a setting
    means here what it means under ``accelerate launch``. Raises ``ValueError`` naming the file
    and what to change when accelerate or this project cannot use it.
    """
    if config.config_file is None:
        return None
    import os

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import is_deepspeed_available
    from accelerate.utils import launch as accelerate_launcher

    path = str(config.config_file)
    argv = ["--config_file", path, "--num_processes", str(config.num_processes)]
    argv += ["--num_machines", str(config.num_machines), "--machine_rank", str(config.machine_rank)]
    argv += ["--main_process_port", "0"]  # a free port for accelerate's checks; elastic picks ours
    argv += ["--num_cpu_threads_per_process", "1"]  # threads are training.cpu_threads' (dropped)
    if config.main_process_ip:
        argv += ["--main_process_ip", config.main_process_ip]
    try:
        args = launch_command_parser().parse_args([*argv, "hle-reasoning-worker"])
        args, defaults, mixed_from_file = _validate_launch_command(args)
    except (Exception, SystemExit) as error:  # accelerate's parser and checks decide
        raise ValueError(
            f"distributed.config_file {path!r}: accelerate refuses it: {error}"
        ) from None
    kind = str(getattr(defaults.distributed_type, "value", defaults.distributed_type))
    where = str(getattr(defaults.compute_environment, "value", defaults.compute_environment))
    if kind not in _SUPPORTED_TYPES or where != "LOCAL_MACHINE":
        raise ValueError(
            f"distributed.config_file {path!r} sets distributed_type: {kind} "
            f"(compute_environment: {where}); this project's workers run "
            f"{', '.join(_SUPPORTED_TYPES)} on local machines or a cluster: choose one of them in "
            "`accelerate config`."
        )
    deepspeed = args.use_deepspeed and not args.cpu
    if deepspeed and not is_deepspeed_available():
        raise ValueError(
            f"distributed.config_file {path!r} asks for DeepSpeed (distributed_type: "
            "DEEPSPEED), which is not installed: `pip install deepspeed`, or choose DDP "
            "(MULTI_GPU) or FSDP in `accelerate config`."
        )
    before = dict(os.environ)
    try:  # accelerate's own checks too (fp8 without an fp8 backend, ...)
        if deepspeed:
            fields = list(defaults.deepspeed_config) + (
                ["mixed_precision"] if mixed_from_file else []
            )
            args.deepspeed_fields_from_accelerate_config = ",".join(fields)
            args.deepspeed_multinode_launcher = "standard"  # torch's launcher, as the workers use
            environment = accelerate_launcher.prepare_deepspeed_cmd_env(args)[1]
        elif (args.use_fsdp or args.multi_gpu) and not args.cpu:
            environment = accelerate_launcher.prepare_multi_gpu_env(args)
        else:
            environment = accelerate_launcher.prepare_simple_launcher_cmd_env(args)[1]
    except Exception as error:
        raise ValueError(
            f"distributed.config_file {path!r}: accelerate refuses it: {error}"
        ) from None
    changed = {
        name: value
        for name, value in environment.items()
        if before.get(name) != value
        and (name.startswith(_WORKER_VARIABLES) or name == "CUDA_VISIBLE_DEVICES")
    }
    return AccelerateLaunch(kind, str(args.mixed_precision or "no"), changed)


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
    if not problems:
        try:
            accelerate_launch(config)
        except ValueError as error:
            problems.append(str(error))
    return problems


def world_size_problems(grpo: Any, world_size: int) -> list[str]:
    """Why ``world_size`` processes cannot share training's global batch (empty if they can).

    ``grpo``: the ``training.grpo`` block. The proposal's batch (``completions_per_step``: 2
    prompts x 2 completions) is the global batch of an optimizer step whatever the number of
    processes. Every process must hold an equal share, and a share must be completions of one
    prompt only (all of them or an equal part): a process whose batch mixed image and text
    questions would score them in two forward passes while another process makes one, and DDP's
    collectives would stop matching (a deadlock; see ../shared/FACTS.md). With one prompt per
    process, every process makes the same calls in the same order.
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
