"""The guide's real-world worker: "Workflow Integration > Real-World Example: Worker with
Workflow" (``AnalyticsAgentWorker`` running ``AnalyticsWorkflow``).

Run it from the repository root: ``python examples/analytics_agent.py``

The saga itself lives in ``src/jobsaga/demo/analytics.py`` (it is also half of ``jobsaga
demo``); read it next to this file. This example runs it on a node for the four example
prompts and prints, for each, the job's outcome, the run's step statuses and undo order, and
what the final-failure hook and the follow-up jobs did. ``DemoAnalyticsAgentWorker`` is the
guide's worker with retries a fraction of a second apart.
"""

from __future__ import annotations

from _support import describe, settled, temporary_app, wait_until

from jobsaga.demo import analytics
from jobsaga.workflow import get_run, list_runs

NOTABLE = ("compensated", "failed", "skipped", "undo_failed")


def main() -> None:
    store = analytics.AnalyticsWorkflow.store  # the stand-in warehouse, report store and UI
    workers = (analytics.DemoAnalyticsAgentWorker, analytics.NotifyUser)
    with temporary_app(*workers, workflows=[analytics.AnalyticsWorkflow]) as app:
        jobs = app.insert_all(analytics.demo_jobs(store))  # seeds the prompts, one job each
        queues = {"analytics_agents": 4, "notifications": 2}
        with app.node(queues, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))

        for job in jobs:
            prompt = store.prompts[job.raw_args["prompt_id"]]
            print(f"{prompt.id} ({prompt.text!r}): prompt {store.status[prompt.id]}")
            print(f"  {describe(app.get_job(job.id) or job)}")
            for listed in sorted(list_runs(app, job_id=job.id), key=lambda r: r.id or 0):
                run = get_run(app, listed.id or 0)
                assert run is not None
                notes = [f"{s.step} {s.status}" for s in run.steps if s.status in NOTABLE]
                notes += [f"{s.step} ran {s.tries}x" for s in run.steps if s.tries > 1]
                if run.undo_order():
                    notes.append(f"undone: {', '.join(run.undo_order())}")
                print(f"  run {run.id} attempt {run.attempt}: {'; '.join([run.status, *notes])}")
        tables = len(store.temp_tables)
        print(f"temp tables kept by the succeeded runs: {tables} (the failed runs dropped theirs)")
        print(f"reports saved: {len(store.reports)}; users notified: {len(store.notifications)}")
        for message in store.ui_messages:
            print(f"UI told: {message['prompt_id']} {message['event']} ({message['error']})")


if __name__ == "__main__":
    main()
