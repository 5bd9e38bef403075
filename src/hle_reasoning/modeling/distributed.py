"""Scale-out: the workers that nodes start as the ``distributed`` block says.

The Kedro session is never replicated. A node that has work to spread (training, answering a
variant's questions) calls :func:`launch`, which starts ``num_processes`` workers with torch.distributed's
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
from datetime import timedelta
from typing import Any

from hle_reasoning.config.distributed import DistributedConfig, accelerate_launch

__all__ = [
    "DistributedConfig",
    "WorkerFailedError",
    "close_workers",
    "init_worker",
    "launch",
    "serve",
    "split",
]

logger = logging.getLogger(__name__)


class WorkerFailedError(RuntimeError):
    """A worker process died or raised; the message names its rank and what it said."""


def accelerate_environment(config: DistributedConfig) -> dict[str, str]:
    """What ``config_file`` adds to the workers' environment, as ``accelerate launch`` would set
    it (mixed precision, FSDP, DeepSpeed, ...: see ``config.distributed.accelerate_launch``)."""
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


def launch(
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
        results = launch(config, None, run_id=RUN_ID)
        if STOP in results.values():
            return rounds
        rounds += 1


def close_workers(config: DistributedConfig, rendezvous_timeout_s: float | None = None) -> None:
    """On machine 0, after its run: end the worker machines' ``serve`` loops (one last round)."""
    launch(config, None, run_id=RUN_ID, rendezvous_timeout_s=rendezvous_timeout_s)


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
    if "WORLD_SIZE" not in os.environ:  # not started by a launcher: one process, no group
        return PartialState(cpu=not torch.cuda.is_available())
    timeout = timedelta(seconds=float(os.environ.get("HLE_DISTRIBUTED_TIMEOUT_S", "600")))
    # accelerate treats a CPU-only process group as such only when told (cpu=True).
    return PartialState(cpu=not torch.cuda.is_available(), backend=backend(), timeout=timeout)


def split(state: Any, items: Sequence[Any]) -> list[Any]:
    """This worker's contiguous share of ``items`` (accelerate's ``split_between_processes``)."""
    with state.split_between_processes(list(items)) as share:
        return list(share)
