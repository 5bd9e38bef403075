"""Project settings: config environments and the project's hooks."""

import warnings

from hle_reasoning import quiet
from hle_reasoning.damaged import DamagedDatasetHook
from hle_reasoning.hooks import (
    KedroMlflowHook,
    ReleaseRunHook,
    StudySummaryHook,
    TrackingTagsHook,
)
from hle_reasoning.preflight import PreflightHook
from hle_reasoning.worker_machine import WorkerMachineHook

# Library deprecation chatter that says nothing about the user's run.
warnings.filterwarnings("ignore", message=".*register_new_resolver.*", category=UserWarning)
# Third-party messages the user cannot act on (mlflow, bitsandbytes): see hle_reasoning.quiet.
quiet.install()

HOOKS = (
    PreflightHook(),
    TrackingTagsHook(),
    StudySummaryHook(),
    DamagedDatasetHook(),
    WorkerMachineHook(),
    ReleaseRunHook(),
    # Last, so called first, as Kedro calls a plugin's hooks: kedro-mlflow's own hook, with each
    # node's parameters logged in one MLflow call (see hle_reasoning.mlflow_hook). It replaces
    # the hook kedro-mlflow registers itself.
    KedroMlflowHook(),
)
# (The distribution name as its metadata spells it, which differs between kedro-mlflow builds.)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow", "kedro_mlflow")

# `kedro run` reads conf/base, then conf/local (ignored by git, for secrets and machine-specific
# overrides). `kedro run --env paper` reads conf/paper instead of conf/local: the proposal's
# full setup (cais/hle, the 11B Vision model in 4-bit on CUDA).
# "soft" merging lets an environment override single keys of a nested block (model.device) instead
# of replacing the whole block.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft", "globals": "soft", "catalog": "soft"},
}
