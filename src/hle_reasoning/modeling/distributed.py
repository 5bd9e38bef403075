"""Scale-out: the workers that nodes start as the ``distributed`` block says.

The Kedro session is never replicated. A node that has work to spread (training, answering a
variant's questions) calls :func:`run_workers`, which starts ``num_processes`` workers with torch.distributed's
elastic launch (``torch.distributed.launcher.api.elastic_launch``, the engine under ``torchrun``
and ``accelerate launch``): one process per GPU (NCCL) or, without GPUs, processes on the CPU
(gloo). Each worker joins the process group through accelerate's ``PartialState``, takes its
share of the work with ``split_between_processes`` and writes its own shard; the node collects
what the workers return and does the catalog saves, so MLflow runs and outputs are written once,
by the parent. ``num_processes: 1`` (the default) starts no launcher at all.

With ``num_machines`` > 1 the same ``kedro run`` is started on every machine with its
``machine_rank``; the workers of all machines meet at ``main_process_ip:main_process_port``.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hle_reasoning.config.distributed import DistributedConfig

__all__ = [
    "AccelerateLaunch",
    "DistributedConfig",
    "WorkerFailedError",
    "accelerate_launch",
    "accelerate_problems",
    "close_workers",
    "init_worker",
    "run_workers",
    "serve",
    "split",
]

logger = logging.getLogger(__name__)


class WorkerFailedError(RuntimeError):
    """A worker process died or raised; the message names its rank and what it said."""


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
    """Why ``config.config_file`` cannot launch this ``training``/``model`` setup on this machine
    (empty if it can, or when there is no file). ``gpus``: whether torch sees CUDA GPUs.

    The block's own checks (the file exists, is an accelerate config, agrees with the block) come
    with the block; these run the file through accelerate's launcher (``accelerate_launch``: a
    file accelerate or this project cannot launch is refused here) and need the other blocks or
    the machine. The preflight lists them before any node runs.
    """
    if config.config_file is None:
        return []
    try:
        launch = accelerate_launch(config)
    except ValueError as error:
        return [str(error)]
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


def accelerate_environment(config: DistributedConfig) -> dict[str, str]:
    """What ``config_file`` adds to the workers' environment, as ``accelerate launch`` would set
    it (mixed precision, FSDP, DeepSpeed, ...: see ``accelerate_launch``)."""
    launch = accelerate_launch(config)
    return dict(launch.environment) if launch is not None else {}


def backend() -> str:
    """NCCL with CUDA GPUs, gloo on CPUs."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RUN_ID = "hle-reasoning"  # the rendezvous id: the same on every machine, round after round
# Launches of this process with several machines: every machine counts the same rounds (each of
# machine 0's spread nodes, then the closing one).
_ROUNDS = itertools.count()


def launch_config(
    config: DistributedConfig, run_id: str | None = None, rendezvous_timeout_s: float | None = None
):
    """torch.distributed's ``LaunchConfig`` for ``config``: static rendezvous, no restarts."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig

    address = config.main_process_ip or "127.0.0.1"
    port = config.main_process_port or _free_port()
    if config.num_machines > 1:
        # Round k meets at main_process_port + k: a machine that finished round k - 1 first must
        # not join the rendezvous store of round k - 1 while machine 0 is still closing it.
        port += next(_ROUNDS)
    timeout = int(max(1, round(rendezvous_timeout_s or config.timeout_s)))
    return LaunchConfig(
        min_nodes=config.num_machines,
        max_nodes=config.num_machines,
        nproc_per_node=config.processes_per_machine,
        run_id=run_id or RUN_ID,
        rdzv_backend="static",
        rdzv_endpoint=f"{address}:{port}",
        rdzv_configs={"rank": config.machine_rank, "timeout": timeout},
        max_restarts=0,  # a failed worker fails the node: the rerun resumes from the shards
        monitor_interval=0.2,
        start_method="spawn",  # a fresh interpreter: nothing of the Kedro session is inherited
        logs_specs=DefaultLogsSpecs(),
        local_addr=config.main_process_ip if config.num_machines > 1 else None,
    )


def run_workers(
    config: DistributedConfig,
    worker: Callable[..., Any] | None,
    *args: Any,
    run_id: str | None = None,
    rendezvous_timeout_s: float | None = None,
) -> dict[int, Any]:
    """Run ``worker(*args)`` in every process of ``config``; their return values by global rank.

    ``worker`` must be a module-level function (it is started with ``spawn``) and should begin
    with :func:`init_worker`. A worker that raises or dies stops the launch (no restarts) and
    this raises :class:`WorkerFailedError` naming each failed rank with its exit code and error.
    """
    from torch.distributed import DistStoreError
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import elastic_launch

    launch_cfg = launch_config(config, run_id, rendezvous_timeout_s)
    name = worker.__name__ if worker is not None else "the work of machine 0"
    logger.info(
        "Starting %d worker process(es) on machine %d of %d (%s, rendezvous %s) for %s",
        config.processes_per_machine,
        config.machine_rank,
        config.num_machines,
        backend(),
        launch_cfg.rdzv_endpoint,
        name,
    )
    env_before = dict(os.environ)
    os.environ.update(accelerate_environment(config))
    os.environ["HLE_DISTRIBUTED_TIMEOUT_S"] = str(config.timeout_s)
    os.environ["HLE_DISTRIBUTED_MACHINES"] = str(config.num_machines)
    try:
        return elastic_launch(launch_cfg, _entry)(worker, args)
    except ChildFailedError as error:
        raise WorkerFailedError(_failure_message(error, name)) from None
    except (RendezvousError, DistStoreError) as error:
        raise WorkerFailedError(
            f"The workers of {name} could not meet at {launch_cfg.rdzv_endpoint} within "
            f"{launch_cfg.rdzv_configs['timeout']} s: {error}. With several machines, start the "
            "same `kedro run` on every machine (each with its machine_rank), and raise "
            "distributed.timeout_s if machine 0 takes longer between two spread nodes."
        ) from None
    finally:
        os.environ.clear()
        os.environ.update(env_before)


STOP = "hle-reasoning: no more work"  # what the workers of the closing round return


def _entry(worker: Callable[..., Any] | None, args: tuple) -> Any:
    """Every worker's entrypoint. With several machines the work comes from global rank 0 (a
    worker machine's ``kedro run`` does not know what machine 0's node is doing); ``None`` from
    rank 0 closes the worker machines' ``serve`` loop."""
    if int(os.environ.get("HLE_DISTRIBUTED_MACHINES", "1")) > 1:
        import torch.distributed as dist

        init_worker(None)
        shared = [(worker, args)]
        dist.broadcast_object_list(shared, src=0)
        worker, args = shared[0]
    if worker is None:
        return STOP
    return worker(*args)


def serve(config: DistributedConfig) -> int:
    """On a worker machine (``machine_rank`` > 0): run this machine's workers for every node that
    machine 0 spreads, until machine 0's run ends; the number of nodes served.

    Each round is one launch that meets machine 0's launch at the rendezvous and receives its
    work from global rank 0. A round that does not meet machine 0 within ``timeout_s`` (machine
    0 stopped, or its next spread node comes later than that) ends with an error.
    """
    rounds = 0
    while True:
        results = run_workers(config, None, run_id=RUN_ID)
        if STOP in results.values():
            return rounds
        rounds += 1


def close_workers(config: DistributedConfig, rendezvous_timeout_s: float | None = None) -> None:
    """On machine 0, after its run: end the worker machines' ``serve`` loops (one last round)."""
    run_workers(config, None, run_id=RUN_ID, rendezvous_timeout_s=rendezvous_timeout_s)


def _failure_message(error: Any, name: str) -> str:
    lines = [f"{len(error.failures)} distributed worker(s) of {name} failed:"]
    for rank, failure in sorted(error.failures.items()):
        what = (
            f"killed by signal {failure.signal_name()}"
            if failure.exitcode is not None and failure.exitcode < 0
            else f"exit code {failure.exitcode}"
        )
        # What the worker raised (elastic's error file); nothing recorded when the process died.
        recorded = failure.error_file_data.get("message")
        detail = recorded.get("message") if isinstance(recorded, dict) else None
        detail = str(detail).strip() if detail else "the process died"
        lines.append(f"  - rank {rank} (local rank {failure.local_rank}): {what}: {detail}")
    lines.append(
        "Work finished before the failure is kept in the workers' shards: run the same command "
        "again to resume."
    )
    return "\n".join(lines)


def init_worker(cpu_threads: int | None = 1):
    """Join the process group (accelerate's ``PartialState``) with the configured timeout.

    Call first in every worker. ``cpu_threads``: torch threads of this process on a CPU (one
    per process, so that workers do not compete for the same cores).
    """
    import torch
    from accelerate import PartialState

    if cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(int(cpu_threads))
        # accelerate's PartialState sets torch's threads to physical cores / local processes on
        # a CPU process group unless OMP_NUM_THREADS is set (2 threads a worker with one worker
        # per machine on 2 cores: 10x slower GRPO steps when they compete).
        os.environ["OMP_NUM_THREADS"] = str(int(cpu_threads))
    if "WORLD_SIZE" not in os.environ:  # not started by a launcher: one process, no group
        return PartialState(cpu=not torch.cuda.is_available())
    timeout = timedelta(seconds=float(os.environ.get("HLE_DISTRIBUTED_TIMEOUT_S", "600")))
    # accelerate treats a CPU-only process group as such only when told (cpu=True).
    return PartialState(cpu=not torch.cuda.is_available(), backend=backend(), timeout=timeout)


def split(state: Any, items: Sequence[Any]) -> list[Any]:
    """This worker's contiguous share of ``items`` (accelerate's ``split_between_processes``)."""
    with state.split_between_processes(list(items)) as share:
        return list(share)
