"""What a step sees of the world besides its arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import NotAJobError
from ..job import Job, JobSpec

C = TypeVar("C")


@dataclass(slots=True, eq=False)
class StepContext(Generic[C]):
    """The context a step, guard, compensation or undo receives as ``ctx``.

    ``context`` is the caller's context (the workflow's ``Context`` model when it declares
    one, e.g. holding the actor); ``job`` and ``attempt`` the job running the workflow
    (``job`` is None in the test entry point).

    ``tries`` counts the runs of the code that receives this ``ctx``, from 1: the step's own
    tries in a step (and its guard), the undo's own tries in an undo, the compensation's own
    calls in a compensation. Each of them decides its own ``Retry()``, so each needs its own
    count: an undo that saw the step's count (``if ctx.tries < 2: return Retry()`` after a
    step that ran once) would retry until its retries ran out. ``step_tries`` is the step's
    count wherever the code runs (in an undo: how many times the step ran).
    """

    workflow: str
    step: str
    run_id: int | None
    job: Job[Any] | None
    attempt: int
    tries: int
    context: C
    inputs: Mapping[str, Any]
    step_tries: int = 1
    """The step's tries so far, from 1 (``tries`` in the step itself)."""
    follow_ups: list[JobSpec] = field(default_factory=list)

    @property
    def actor(self) -> Any:
        """The caller's actor, when the context carries one (the guide's pattern)."""
        try:
            return self.context.actor  # type: ignore[attr-defined]
        except AttributeError:
            if isinstance(self.context, Mapping) and "actor" in self.context:
                return self.context["actor"]
            raise AttributeError(
                f"the context of workflow {self.workflow} has no actor "
                f"(it is {type(self.context).__name__})"
            ) from None

    def enqueue_after_success(self, *jobs: JobSpec) -> None:
        """Insert these jobs only once the whole workflow has succeeded.

        Steps never insert jobs themselves (an inserted job cannot be compensated); jobs
        registered here are inserted in the transaction that completes the workflow's job,
        and dropped if this try of the step fails or the workflow rolls back.
        """
        for spec in jobs:
            if not isinstance(spec, JobSpec):
                raise NotAJobError(
                    f"enqueue_after_success takes jobs built by Worker.new(...), got {spec!r}"
                )
        self.follow_ups.extend(jobs)
