"""Where launched runs execute their steps, chosen by `MNIST_ASSETS_EXECUTOR`.

- `multiprocess` (default): each step in a process of its own on this machine (Dagster's default
  executor), forked from a server that imported the code location and the ML code once per run, so a
  step does not pay the imports of torch, FiftyOne and the rest again (about 5 s each on 2 cores).
  The code location alone does not import them (the assets do, in their bodies): a run's own
  process, the daemon and the code servers never compute (docs/decisions.md has the figures).
- `in_process`: every step of a run in the run's own process, one after another: no process start
  and code import per step.
- `celery`: each step on a Celery worker (`make worker`), through the broker and result backend in
  `DAGSTER_CELERY_BROKER_URL` and `DAGSTER_CELERY_BACKEND_URL` (read by the launcher and every
  worker). A watchdog makes the run fail, naming the step and the worker, when the worker that
  runs a step stops answering (killed), and fails it with the fix when no worker answers for
  `MNIST_ASSETS_CELERY_WAIT_SECONDS` (default 120), instead of waiting forever.
"""

from __future__ import annotations

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "celery")
# Worker-side settings every worker must share with the launcher (deploy/celery.yaml has them too):
# a started task records its worker, so a lost one can be named.
CELERY_SETTINGS = {"task_track_started": True, "worker_prefetch_multiplier": 1}


def build_executor(kind: str) -> dg.ExecutorDefinition:
    """The executor of the code location's jobs (asset runs, backfills, automation)."""
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from mnist_assets.celery_executor import celery_wait_seconds, watched_celery_executor  # only then: celery's imports

        return watched_celery_executor.configured(
            {
                "broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
                "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
                "config_source": CELERY_SETTINGS,
                "worker_wait_seconds": celery_wait_seconds(),
            }
        )
    return dg.multiprocess_executor.configured({"start_method": {"forkserver": {"preload_modules": forkserver_preload()}}})


def forkserver_preload() -> list[str]:
    """The code location and every module of `mnist_assets.ml`: what steps import (torch, FiftyOne,
    sklearn, matplotlib)."""
    import pkgutil

    import mnist_assets.ml

    modules = pkgutil.walk_packages(mnist_assets.ml.__path__, "mnist_assets.ml.")
    return ["mnist_assets.definitions", *(module.name for module in modules if not module.ispkg)]
