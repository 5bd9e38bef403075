"""Several machines: the hook that turns a ``kedro run`` with ``distributed.machine_rank`` > 0
into a worker machine serving machine 0's spread nodes (see docs/scale-out.md)."""

from __future__ import annotations

import logging
from typing import Any

import click
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class WorkerMachineHook:
    """Several machines: a ``kedro run`` with ``distributed.machine_rank`` > 0 runs workers only.

    Before anything else of the session (MLflow included) it serves machine 0's spread nodes
    (``hle_reasoning.modeling.distributed.serve``) and then ends the command: the pipeline, the
    catalog saves and MLflow are machine 0's alone. Machine 0 closes the worker machines' loops
    when its run ends, successfully or not, with the block Kedro validated for the run's nodes
    (validated here when the run reads none); a worker machine, which runs no pipeline, validates
    the block as written.
    """

    def __init__(self) -> None:
        self._raw: dict[str, Any] | None = None  # machine 0's distributed block, as written

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        from hle_reasoning.config import DistributedConfig, parse
        from hle_reasoning.modeling.distributed import serve

        self._raw = None
        # The parameters as written: context.params would validate every pipeline's blocks
        # here, before the run names its pipelines.
        params = context.config_loader["parameters"].get("distributed")
        if not isinstance(params, dict) or int(params.get("num_machines") or 1) <= 1:
            return
        if str(params.get("machine_rank") or 0) == "0":
            self._raw = params
            return
        config, problems = parse(DistributedConfig, params, DistributedConfig.PATH)
        if problems or config is None:
            return  # the run lists the block's problems with every other one
        if config.is_main_machine:  # a rank written another way (0.0)
            self._raw = params
            return
        click.echo(
            f"hle-reasoning: machine {config.machine_rank} of {config.num_machines} runs "
            f"{config.processes_per_machine} worker process(es) for machine 0 "
            f"({config.main_process_ip}:{config.main_process_port}); no pipeline, MLflow run or "
            "output here."
        )
        served = serve(config)
        click.echo(f"hle-reasoning: machine 0's run ended; this machine served {served} node(s).")
        raise SystemExit(0)

    def _main_machine_config(self, catalog: Any) -> Any:
        """Machine 0's block: the one Kedro validated for the run's nodes, or validated here
        when no node of the run reads it."""
        if self._raw is None:
            return None
        from hle_reasoning.config import DistributedConfig, parse

        try:
            config = catalog.load("params:distributed")
        except Exception:  # a catalog without the parameters
            config = None
        if not isinstance(config, DistributedConfig):
            config, _ = parse(DistributedConfig, self._raw, DistributedConfig.PATH)
        return config if config is not None and config.is_main_machine else None

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: Any, pipeline: Any, catalog: Any
    ) -> None:
        config = self._main_machine_config(catalog)
        if config is not None:
            from hle_reasoning.modeling.distributed import close_workers

            close_workers(config)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Any, catalog: Any
    ) -> None:
        config = self._main_machine_config(catalog)
        if config is None:
            return
        from hle_reasoning.modeling.distributed import close_workers

        try:  # the worker machines may be gone already: do not wait long for them
            close_workers(config, rendezvous_timeout_s=min(60.0, config.timeout_s))
        except Exception as closing:  # the run's own error is the one to report
            logger.warning("Could not close the worker machines' loops: %s", closing)
