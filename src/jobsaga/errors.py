"""Every error jobsaga raises on purpose, in one tree rooted at :class:`JobsagaError`.

``except jobsaga.errors.JobsagaError`` catches all of them. A class that also derives from
a built-in exception (marked in brackets) keeps the ``except ValueError`` or
``except TimeoutError`` a caller would write without knowing jobsaga::

    JobsagaError
    ├── ConfigError [ValueError]           a definition that cannot work, whatever the call: a
    │   │                                  misspelt class option, a bad URL or cron line,
    │   │                                  Snooze(-1), a node without queues, a worker without
    │   │                                  perform; raised before anything runs
    │   └── WorkflowDefinitionError        a bad DAG, found when the class statement runs
    ├── ArgsError [ValueError]             what one Worker.new call got wrong: args that fail
    │   │                                  validation or are not JSON, a bad per-job option
    │   └── WorkflowInputError             a missing or invalid workflow input; no step ran
    ├── NotAJobError [TypeError]           an insert given something not built by Worker.new
    ├── FilterError [ValueError]           a job or run filter with a misspelt or bad criterion
    ├── UnknownWorkerError [LookupError]   a job names a worker the node does not know
    ├── MigrationError [RuntimeError]      the schema is missing or newer than this code
    ├── DatabaseError                      the database failed a statement (driver error chained)
    │   ├── DatabaseUnavailable [ConnectionError]
    │   │                                  cannot be reached right now: transient, retry later
    │   ├── DataRejected [ValueError]      refused this data (bad value): retrying will not help
    │   ├── UndecodableRow                 a stored job row changed by hand; fails that job alone
    │   └── UniqueInsertContention [RuntimeError]
    │                                      a unique insert lost every race: transient
    ├── NodeStateError [RuntimeError]      a node started twice, or again while its last run's
    │                                      threads still run jobs
    ├── NodeStopTimeout [TimeoutError]     a node thread did not stop within the time given
    ├── JobTimeout [TimeoutError]          a perform overran its worker's timeout
    ├── JobOrphaned                        the node running a job died; the lifeline rescued it
    ├── PerformError                       a perform returned ``Error(reason)``
    ├── InvalidResult [TypeError]          a perform returned something that is not a result
    ├── EnqueueInStepError [RuntimeError]  a workflow step tried to insert a job
    ├── WorkflowOutsideJobError [RuntimeError]
    │                                      a workflow started outside a job
    ├── StepArgumentError [LookupError]    a ``name.field`` step argument not in the result
    ├── StepResultError [TypeError]        a step returned a value the run log cannot store
    ├── RetriesExhausted                   a step asked for more retries than ``max_retries``
    ├── RetryCancelled                     a step waiting to retry when the workflow failed
    ├── SwitchNoMatch [LookupError]        no case of a switch matched and it has no default
    ├── StepTimeout [TimeoutError]         a step's try overran its ``timeout``
    ├── RunTimeout [TimeoutError]          a run overran its workflow's ``timeout``
    ├── RecordedError                      an error read back from the run log (a resumed run)
    ├── RunAbandoned                       an operator rolled back a run nobody will resume
    │   └── JobCancelled                   the run's job was cancelled mid-run: rolled back
    ├── RunStateError [RuntimeError]       a run cannot be rolled back in its current state
    ├── ActionRefused                      the dashboard will not take an action (bad input)
    ├── UnknownStepError [KeyError]        a run record asked for a step it does not hold
    ├── RunLogUnwritable                   the run log could not be written: the run stopped
    │                                      for the job's next attempt to resume
    └── WorkflowError                      the saga failed: the step error plus every undo error

A :class:`WorkflowError` is what a failed run returns (and what ``WorkflowWorker`` raises):
``error.error`` is the exception that started the rollback, ``error.undo_errors`` the undos
that failed, and :meth:`WorkflowError.find` searches all of them by type, so a caller can
ask "did a ``PaymentDeclined`` cause this?" without walking the structure by hand.

This module imports nothing from jobsaga, so every layer can raise from it (docs/errors.md
says when each one is raised).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

E = TypeVar("E", bound=BaseException)

__all__ = [
    "ActionRefused",
    "ArgsError",
    "ConfigError",
    "DataRejected",
    "DatabaseError",
    "DatabaseUnavailable",
    "EnqueueInStepError",
    "FilterError",
    "InvalidResult",
    "JobCancelled",
    "JobOrphaned",
    "JobTimeout",
    "JobsagaError",
    "MigrationError",
    "NodeStateError",
    "NodeStopTimeout",
    "NotAJobError",
    "PerformError",
    "RecordedError",
    "RetriesExhausted",
    "RetryCancelled",
    "RunAbandoned",
    "RunLogUnwritable",
    "RunStateError",
    "RunTimeout",
    "StepArgumentError",
    "StepFailure",
    "StepResultError",
    "StepTimeout",
    "SwitchNoMatch",
    "UndecodableRow",
    "UniqueInsertContention",
    "UnknownStepError",
    "UnknownWorkerError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowOutsideJobError",
]


class JobsagaError(Exception):
    """Root of jobsaga's own exceptions, so callers can catch them as a family."""


# --- what a caller gave ---------------------------------------------------------------------


class ConfigError(JobsagaError, ValueError):
    """A definition that cannot work whatever the call (a class option, a worker without
    ``perform``, a node setting, a result's delay, a queue limit); raised before anything
    runs, so nothing was started or stored."""


class WorkflowDefinitionError(ConfigError):
    """The workflow class cannot form a valid DAG; raised when the class statement runs."""


class ArgsError(JobsagaError, ValueError):
    """What one ``Worker.new`` call was given, refused: its args, meta, or a per-job option
    (``priority=12`` here, where the same value as a class option is a ConfigError);
    nothing was stored."""


class WorkflowInputError(ArgsError):
    """A workflow input is missing or invalid; no step has run."""


class NotAJobError(JobsagaError, TypeError):
    """Something other than a job built by ``Worker.new(...)`` where a job is expected (an
    insert, ``Complete(enqueue=...)``, ``enqueue_after_success``): a worker class or raw args
    carry none of the options and checks a stored job needs."""


class FilterError(JobsagaError, ValueError):
    """A job or run filter (list, count, bulk cancel/retry/delete, ``list_runs``) that cannot
    be applied as given."""


class UnknownWorkerError(JobsagaError, LookupError):
    """The node has no worker registered under the job's worker name."""


class MigrationError(JobsagaError, RuntimeError):
    """The database schema does not match what this version of jobsaga expects."""


# --- the database ---------------------------------------------------------------------------


class DatabaseError(JobsagaError):
    """The database failed a statement. Raw driver errors (psycopg, sqlite3) never reach a
    caller of jobsaga's API: they arrive as one of these, the driver's error chained."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """The database cannot be reached (server down or restarting, no such database, refused
    login, a SQLite file that cannot be opened): transient, so the same write may succeed
    later."""


class DataRejected(DatabaseError, ValueError):
    """The database refused the data itself (a value it cannot store): the same write will
    fail again, so it must be cleaned or given up, never retried as it is."""


class UndecodableRow(DatabaseError):
    """A stored job row that cannot be read back as a job: a JSON column of the wrong shape
    or not JSON at all, a number column holding text. Nothing jobsaga writes looks like
    that, so the row was changed by hand or by another program; retrying cannot fix it, so
    a fetch discards such a job with this error recorded, and its batch-mates run."""

    def __init__(self, job_id: object, problems: list[str]) -> None:
        self.job_id = job_id
        self.problems = problems
        super().__init__(f"job {job_id} cannot be decoded: {'; '.join(problems)}")


class UniqueInsertContention(DatabaseError, RuntimeError):
    """A unique job's insert kept finding its key released by another transaction between
    its insert and its lookup, try after try. Only extreme contention on one key does that;
    the transaction rolled back with nothing stored, so the same insert may succeed later."""


# --- nodes and jobs -------------------------------------------------------------------------


class NodeStateError(JobsagaError, RuntimeError):
    """A node asked to start when it cannot: it is running already, or jobs of its last run
    still hold threads (Python cannot stop them), which a restart would double up on."""


class NodeStopTimeout(JobsagaError, TimeoutError):
    """A node running in a thread did not stop within the time given; it is still stopping
    (its jobs finishing, its outcomes being written)."""


class JobTimeout(JobsagaError, TimeoutError):
    """A perform ran longer than the worker's timeout allows."""


class JobOrphaned(JobsagaError):
    """The node performing the job stopped heartbeating; given to ``on_final_failure`` when
    the lifeline discards a job whose last attempt died with its node."""


class PerformError(JobsagaError):
    """A perform returned ``Error(reason)``; handed to ``on_final_failure`` like an exception."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidResult(JobsagaError, TypeError):
    """A perform returned something that is not a result (a class instead of an instance...)."""


class EnqueueInStepError(JobsagaError, RuntimeError):
    """Raised when a workflow step inserts a job: an enqueued job cannot be compensated.

    The guard follows the step through context variables, so it also covers
    ``asyncio.to_thread`` and tasks the step creates, but not a thread the step starts itself
    (``threading.Thread``, its own executor, ``loop.run_in_executor``), which inherits none:
    an insert from there is not refused, though the rule applies (docs/workflows.md)."""


# --- workflows ------------------------------------------------------------------------------


class WorkflowOutsideJobError(JobsagaError, RuntimeError):
    """A workflow was started outside a job. Workflows run inside jobs (``WorkflowWorker``)."""


class StepArgumentError(JobsagaError, LookupError):
    """A step asked for ``source.field`` and the source's value has no such field."""


class StepResultError(JobsagaError, TypeError):
    """A step returned a value the run log cannot store as JSON: a resumed run hands results
    to later steps, so one that cannot round-trip fails its step when it returns."""


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


class SwitchNoMatch(JobsagaError, LookupError):
    """No case of a switch matched its arguments and the switch has no default case: the
    switch fails as a step would (a value nobody planned for must not pass silently)."""


class StepTimeout(JobsagaError, TimeoutError):
    """A try of a step ran longer than the step's ``timeout`` (an ``async def`` step is
    cancelled; a thread cannot be stopped, so a plain ``def`` step's thread is abandoned)."""


class RunTimeout(JobsagaError, TimeoutError):
    """A run ran longer than its workflow's ``timeout`` (``on_timeout="fail"``)."""


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


class ActionRefused(JobsagaError):
    """An action or a filter the web dashboard will not take (wrong state, bad input): shown
    on the page, with the reason, as a 400."""


class RunStateError(JobsagaError, RuntimeError):
    """The run has ended already, or its job may still resume it."""


class UnknownStepError(JobsagaError, KeyError):
    """A run record was asked for a step it holds no record of (a misspelt name, or a step
    the run never reached)."""


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
