"""Errors of the workflow layer, under jobsaga's one root.

::

    JobsagaError
    ├── ConfigError
    │   └── WorkflowDefinitionError   a bad DAG, found when the class is defined
    ├── ArgsError
    │   └── WorkflowInputError        a missing or invalid input, before any step runs
    ├── WorkflowOutsideJobError       a workflow run outside a job (or the test entry point)
    ├── RetriesExhausted              a step asked for more retries than ``max_retries``
    ├── RetryCancelled                a step waiting to retry when the workflow failed
    ├── StepArgumentError             a ``name.field`` argument not found in the result
    ├── RecordedError                 an error read back from the run log (a resumed run)
    ├── RunAbandoned                  an operator rolled back a run nobody will resume
    │   └── JobCancelled              the run's job was cancelled mid-run: it was rolled back
    ├── RunStateError                 a run cannot be rolled back in its current state
    ├── RunLogUnwritable              the run log could not be written: the run was stopped
    └── WorkflowError                 the saga failed: the step error plus every undo error

A :class:`WorkflowError` is what a failed run returns (and what ``WorkflowWorker`` raises):
``error.error`` is the exception that started the rollback, ``error.undo_errors`` the undos
that failed, and :meth:`WorkflowError.find` searches all of them by type, so a caller can
ask "did a ``PaymentDeclined`` cause this?" without walking the structure by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ArgsError, ConfigError, JobsagaError

E = TypeVar("E", bound=BaseException)


class WorkflowDefinitionError(ConfigError):
    """The workflow class cannot form a valid DAG; raised when the class statement runs."""


class WorkflowInputError(ArgsError):
    """A workflow input is missing or invalid; no step has run."""


class WorkflowOutsideJobError(JobsagaError, RuntimeError):
    """A workflow was started outside a job. Workflows run inside jobs (``WorkflowWorker``)."""


class RetriesExhausted(JobsagaError):
    """A step (or an undo) asked to be retried once more than its limit allows."""

    def __init__(
        self, step: str, limit: int, last: BaseException | None, what: str = "step"
    ) -> None:
        reason = f": {type(last).__name__}: {last}" if last is not None else ""
        super().__init__(f"{what} {step!r} gave up after {limit} retries{reason}")
        self.step = step
        self.limit = limit
        self.last = last
        if last is not None:
            self.__cause__ = last


class RetryCancelled(JobsagaError):
    """A step was waiting to retry when another step failed the workflow: it is not retried.
    Its last error (if it raised one) is the cause."""

    def __init__(self, step: str, last: BaseException | None) -> None:
        super().__init__(f"step {step!r} was not retried: the workflow is rolling back")
        self.step = step
        self.last = last
        if last is not None:
            self.__cause__ = last


class StepArgumentError(JobsagaError, LookupError):
    """A step asked for ``source.field`` and the source's value has no such field."""


class RecordedError(JobsagaError):
    """An error recorded by an earlier attempt of a resumed run; its class is not restored
    (errors are stored as JSON), so ``type_name`` says what it was."""

    def __init__(self, data: dict[str, object]) -> None:
        self.type_name = str(data.get("type", "Exception"))
        self.message = str(data.get("message", ""))
        self.traceback_text = str(data.get("traceback", ""))
        super().__init__(f"{self.type_name}: {self.message} (recorded by an earlier attempt)")


class RunAbandoned(JobsagaError):
    """The reason an operator gave for rolling back an unfinished run (``runs rollback``)."""


class JobCancelled(RunAbandoned):
    """The job running the workflow was cancelled mid-run (``app.cancel_job``, ``jobsaga jobs
    cancel``): the cause recorded for the rollback that followed. ``reason`` is the cancel's
    reason, ``job_id`` the job."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(f"job {job_id} was cancelled: {reason}")
        self.job_id = job_id
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:  # keep copy/deepcopy working
        return (type(self), (self.job_id, self.reason))


class RunStateError(JobsagaError, RuntimeError):
    """The run has ended already, or its job may still resume it."""


class RunLogUnwritable(JobsagaError):
    """The run log could not be written (after retrying, or the database refused the data):
    the run was stopped as a shutdown would stop it, without starting another step or
    undoing anything, since neither could be recorded. The attempt fails with this error;
    the job's next attempt resumes the run from what the log holds (a step whose completion
    was recorded does not run again). ``error`` (also the cause) is the database's error;
    ``how`` says why the log gave up."""

    def __init__(self, run_id: int | None, error: BaseException, how: str) -> None:
        super().__init__(
            f"the run log of run {run_id} could not be written ({how}: "
            f"{type(error).__name__}: {error}); the run was stopped without starting another "
            "step, and the job's next attempt resumes it from what was recorded"
        )
        self.run_id = run_id
        self.error = error
        self.how = how
        self.__cause__ = error

    def __reduce__(self) -> tuple[object, ...]:  # keep copy/deepcopy working
        return (type(self), (self.run_id, self.error, self.how))


@dataclass(frozen=True, slots=True)
class StepFailure:
    """One error of a failed run, with the step it belongs to."""

    step: str
    error: BaseException


class WorkflowError(JobsagaError):
    """A saga that failed, with everything that went wrong on the way down.

    ``step`` and ``error``: the failure that started the rollback (after compensation had its
    say). ``undo_errors``: each undo that failed for good, in the order the rollback met them.
    ``other_errors``: steps that failed concurrently while the run was already stopping.
    """

    def __init__(
        self,
        workflow: str,
        step: str,
        error: BaseException,
        *,
        undo_errors: tuple[StepFailure, ...] = (),
        other_errors: tuple[StepFailure, ...] = (),
        undone: tuple[str, ...] = (),
        run_id: int | None = None,
    ) -> None:
        message = f"workflow {workflow} failed at step {step!r}: {type(error).__name__}: {error}"
        if undone:
            message += f"; undone: {', '.join(undone)}"
        if undo_errors:
            message += "; undo failed for " + ", ".join(
                f"{f.step!r} ({type(f.error).__name__}: {f.error})" for f in undo_errors
            )
        super().__init__(message)
        self.workflow = workflow
        self.step = step
        self.error = error
        self.undo_errors = undo_errors
        self.other_errors = other_errors
        self.undone = undone
        self.run_id = run_id
        self.__cause__ = error

    @property
    def rolled_back(self) -> bool:
        """True when every undo that was due succeeded."""
        return not self.undo_errors

    def errors(self) -> Iterator[StepFailure]:
        """Every error of the run: the original first, then concurrent ones, then undo errors."""
        yield StepFailure(self.step, self.error)
        yield from self.other_errors
        yield from self.undo_errors

    def find(self, kind: type[E]) -> list[E]:
        """All errors of the run that are instances of ``kind``, looking through causes too."""
        found: list[E] = []
        for failure in self.errors():
            seen: set[int] = set()
            current: BaseException | None = failure.error
            while current is not None and id(current) not in seen:
                seen.add(id(current))
                if isinstance(current, kind):
                    found.append(current)
                    break
                current = current.__cause__
        return found

    def has(self, kind: type[BaseException]) -> bool:
        return bool(self.find(kind))

    def __reduce__(self) -> tuple[object, ...]:  # keep copy/deepcopy working
        return (
            _rebuild,
            (
                self.workflow,
                self.step,
                self.error,
                self.undo_errors,
                self.other_errors,
                self.undone,
                self.run_id,
            ),
        )


def _rebuild(
    workflow: str,
    step: str,
    error: BaseException,
    undo_errors: tuple[StepFailure, ...],
    other_errors: tuple[StepFailure, ...],
    undone: tuple[str, ...],
    run_id: int | None,
) -> WorkflowError:
    return WorkflowError(
        workflow,
        step,
        error,
        undo_errors=undo_errors,
        other_errors=other_errors,
        undone=undone,
        run_id=run_id,
    )
