"""What ``jobsaga demo`` runs: a shop's jobs (:mod:`.shop`) and the guide's analytics saga
(:mod:`.analytics`) on one app, every outcome of each shown.

``build_app`` is also what ``jobsaga runs show RUN_ID --app jobsaga.demo:build_app --url
sqlite:///jobsaga-demo.db`` loads to read the demo's run log afterwards.
"""

from __future__ import annotations

from ..app import App
from ..job import JobSpec
from ..worker import Worker
from . import analytics, shop

DEMO_WORKERS: list[type[Worker]] = [
    *shop.SHOP_WORKERS,
    analytics.DemoAnalyticsAgentWorker,
    analytics.NotifyUser,
]
DEMO_QUEUES = {**shop.SHOP_QUEUES, "analytics_agents": 4, "notifications": 2}


def build_app(url: str | None = None) -> App:
    """An App with every demo worker and the analytics workflow registered."""
    return App(url, workers=DEMO_WORKERS, workflows=[analytics.AnalyticsWorkflow])


def demo_jobs() -> list[JobSpec]:
    """The shop's jobs, then one analytics saga job per example prompt (seeding the prompts)."""
    return shop.demo_jobs() + analytics.demo_jobs()


def reset() -> None:
    """Forget what an earlier demo in this process left in memory (the shop's final-failure
    notes, the saga's stand-in store), so every run shows the same paths."""
    shop.final_failures.clear()
    analytics.AnalyticsWorkflow.store = analytics.AnalyticsStore()
