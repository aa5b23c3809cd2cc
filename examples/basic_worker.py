"""Basic worker: the guide's "Worker Structure > Basic Worker".

Run it from the repository root: ``python examples/basic_worker.py``

A worker is a class whose Oban-style options (queue, max_attempts, priority, tags) are
checked when the class is created, with a typed ``Args`` model, a ``perform`` and, like the
guide's ``timeout/1``, an optional ``timeout`` method. Returning normally completes the job;
returning ``Error(reason)`` (the guide's ``{:error, reason}``) fails the attempt, and the job
is retried until ``max_attempts``, then discarded.
"""

from __future__ import annotations

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Error, Job, Worker


def process_task(task_id: str) -> tuple[bool, str]:
    """Stands in for the real work: tasks named ``broken-*`` always fail."""
    if task_id.startswith("broken"):
        return False, "upstream refused the task"
    return True, f"result of {task_id}"


class BasicWorker(
    Worker,
    queue="default",  # which queue
    max_attempts=3,  # retry limit
    priority=1,  # 0 (highest) to 9
    tags=["processing"],  # stored on each job
    name="examples.basic",  # the stable name stored on the job (default: the import path)
    # retries 0.1 s apart so the example is quick; the default curve: exponential_backoff.py
    backoff=lambda attempt: 0.1,
):
    class Args(BaseModel):
        task_id: str

    def perform(self, job: Job[Args]) -> Error | None:
        task_id = job.args.task_id  # typed: no string-key pattern matching
        ok, detail = process_task(task_id)
        say(f"  perform {task_id} attempt {job.attempt}: {'ok' if ok else 'error: ' + detail}")
        if ok:
            return None  # the guide's :ok -> completed
        return Error(detail)  # the guide's {:error, reason} -> retried, then discarded

    def timeout(self, job: Job[Args]) -> float:
        return 5 * 60  # seconds (the default is the class option timeout=60)


def main() -> None:
    options = BasicWorker.options
    print(
        f"BasicWorker options: queue={options.queue} max_attempts={options.max_attempts} "
        f"priority={options.priority} tags={list(options.tags)}"
    )
    with temporary_app(BasicWorker) as app:
        good = app.insert(BasicWorker.new({"task_id": "task-123"}))
        bad = app.insert(BasicWorker.new({"task_id": "broken-456"}))
        print(f"inserted job {good.id}: queue={good.queue} priority={good.priority}", end=" ")
        print(f"tags={list(good.tags)} max_attempts={good.max_attempts}")
        with app.node({"default": 10}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app, good, bad))
        for job in (good, bad):
            print(describe(app.get_job(job.id) or job))


if __name__ == "__main__":
    main()
