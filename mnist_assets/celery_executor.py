"""dagster-celery's executor with a watchdog on the workers that run a run's steps (see executors.py)."""

from __future__ import annotations

import threading
import time

import dagster as dg
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor, _submit_task
from dagster_celery.make_app import make_app
from kombu.utils.url import maybe_sanitize_url

from mnist_assets.ml.core.environment import seconds_setting
from mnist_assets.worker import SQLITE_REFUSAL

WATCH_SECONDS = 2.0  # between two looks at the workers
LOST_AFTER = 3  # looks without an answer from a step's worker before the step is failed
DEFAULT_WAIT_SECONDS = 120  # for a worker to take a step (MNIST_ASSETS_CELERY_WAIT_SECONDS)


def celery_wait_seconds() -> int:
    return seconds_setting("MNIST_ASSETS_CELERY_WAIT_SECONDS", DEFAULT_WAIT_SECONDS, whole=True)


@dg.executor(
    name="celery",
    config_schema={**CELERY_CONFIG, "worker_wait_seconds": dg.Field(int, is_required=False, default_value=DEFAULT_WAIT_SECONDS)},
    requirements=dg.multiple_process_executor_requirements(),
)
def watched_celery_executor(init_context):
    """dagster-celery's executor with a watchdog on the workers that run the steps."""
    from dagster._core.execution.retries import RetryMode

    refusal = sqlite_refusal(init_context.instance)
    if refusal:
        raise dg.DagsterInvariantViolationError(refusal)
    config = init_context.executor_config
    return WatchedCeleryExecutor(
        broker=config.get("broker"),
        backend=config.get("backend"),
        config_source=config.get("config_source"),
        include=config.get("include"),
        retries=RetryMode.from_config(config["retries"]),
        worker_wait_seconds=config["worker_wait_seconds"],
    )


def sqlite_refusal(instance: dg.DagsterInstance) -> str | None:
    """The refusal `make worker` gives (mnist_assets/worker.py) when this instance keeps runs or
    events in SQLite: the workers could not see them, and would race to create its tables."""
    if any("Sqlite" in type(storage).__name__ for storage in (instance.run_storage, instance.event_log_storage)):
        return SQLITE_REFUSAL.format(where=f"this run's instance ({instance.root_directory})")
    return None


class WatchedCeleryExecutor(CeleryExecutor):
    def __init__(self, worker_wait_seconds: int = DEFAULT_WAIT_SECONDS, **kwargs):
        super().__init__(**kwargs)
        self.worker_wait_seconds = worker_wait_seconds

    def execute(self, plan_context, execution_plan):
        # The broker's password stays out of the run's event log.
        watchdog = Watchdog(make_app(self.app_args()), self.worker_wait_seconds, maybe_sanitize_url(self.broker))

        def submit(app, context, step, queue, priority, known_state):
            result = _submit_task(app, context, step, queue, priority, known_state)
            watchdog.track(step.key, result)
            return result

        watchdog.start()
        try:
            yield from core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=submit)
        finally:
            watchdog.stop()


class Watchdog(threading.Thread):
    """Looks at the workers every WATCH_SECONDS while a run waits on them. A step whose worker stops
    answering, or that no worker takes while none answers for `wait` seconds, gets a failure stored
    as its result: the executor's loop then fails the run with that message, and the steps not
    started yet are revoked and failed too (a lost worker may have reserved them)."""

    def __init__(self, app, wait: int, broker: str):
        super().__init__(name="celery watchdog", daemon=True)
        self.app, self.wait, self.broker = app, wait, broker
        self.results: dict[str, object] = {}
        self.silent: dict[str, int] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def track(self, step_key: str, result) -> None:
        with self._lock:
            self.results[step_key] = result

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        nobody_since = None
        while not self._halt.wait(WATCH_SECONDS):
            try:
                alive = {name for reply in self.app.control.ping(timeout=1.0) for name in reply}
            except Exception:  # noqa: BLE001 - the broker itself is down: say so through the steps
                alive = set()
            nobody_since = None if alive else (nobody_since or time.monotonic())
            with self._lock:
                waiting = {key: result for key, result in self.results.items() if not result.ready()}
            lost = self._lost_workers(waiting, alive)
            if lost:
                for step_key, worker in lost.items():
                    self._fail(
                        waiting.pop(step_key),
                        f"Celery worker {worker} stopped answering while it ran step "
                        f"{step_key!r} (killed, or cut off from the broker); nothing it half-wrote is visible. "
                        "Launch the run again: the remaining workers take it.",
                    )
                for step_key, result in waiting.items():
                    if result.state == "PENDING":
                        result.revoke()
                        self._fail(result, f"step {step_key!r} was not run: the run stopped when a worker was lost.")
            elif nobody_since is not None and time.monotonic() - nobody_since > self.wait:
                for step_key, result in waiting.items():
                    if result.state == "PENDING":
                        result.revoke()
                        self._fail(
                            result,
                            f"no Celery worker answered on {self.broker} for {self.wait} s, so step "
                            f"{step_key!r} never started; start one with `make worker` (same environment "
                            "and settings as the launcher), then launch the run again.",
                        )

    def _lost_workers(self, waiting: dict, alive: set) -> dict[str, str]:
        lost = {}
        for step_key, result in waiting.items():
            info = result.info if result.state == "STARTED" else None
            worker = info.get("hostname") if isinstance(info, dict) else None
            if worker is None or worker in alive:
                self.silent.pop(step_key, None)
                continue
            self.silent[step_key] = self.silent.get(step_key, 0) + 1
            if self.silent[step_key] >= LOST_AFTER:
                lost[step_key] = worker
        return lost

    def _fail(self, result, message: str) -> None:
        from celery.exceptions import WorkerLostError

        self.app.backend.mark_as_failure(result.id, WorkerLostError(message))
