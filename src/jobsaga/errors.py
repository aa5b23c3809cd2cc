"""Every error jobsaga raises on purpose derives from :class:`JobsagaError`.

::

    JobsagaError
    ├── ConfigError            a misspelt option, a bad URL, an invalid cron line
    ├── ArgsError              job args that fail validation or are not JSON (names the field)
    ├── UnknownWorkerError     a job names a worker the node does not know
    ├── MigrationError         the database schema is missing or newer than this code
    ├── DatabaseError          the database failed a statement (driver error chained)
    │   ├── DatabaseUnavailable    cannot be reached right now: transient, retry later
    │   ├── DataRejected           refused this data (bad value): retrying will not help
    │   └── UndecodableRow         a stored job row changed by hand (engines/rows.py)
    ├── JobTimeout             a perform overran its worker's timeout
    ├── JobOrphaned            the node running a job died; the lifeline rescued the job
    ├── FilterError            a job filter with a misspelt or invalid criterion
    ├── EnqueueInStepError     a workflow step tried to insert a job (see docs/workflows.md)
    └── RunLogUnwritable       a saga's run log could not be written; the run was stopped
                               for the next attempt to resume (workflow/errors.py)
"""

from __future__ import annotations


class JobsagaError(Exception):
    """Root of jobsaga's own exceptions, so callers can catch them as a family."""


class ConfigError(JobsagaError, ValueError):
    """Configuration or class options that cannot work; raised before anything runs."""


class ArgsError(JobsagaError, ValueError):
    """Job args rejected at insert; nothing was stored."""


class UnknownWorkerError(JobsagaError, LookupError):
    """The node has no worker registered under the job's worker name."""


class MigrationError(JobsagaError, RuntimeError):
    """The database schema does not match what this version of jobsaga expects."""


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


class FilterError(JobsagaError, ValueError):
    """A job filter (list, count, bulk cancel/retry/delete) that cannot be applied as given."""


class JobTimeout(JobsagaError, TimeoutError):
    """A perform ran longer than the worker's timeout allows."""


class JobOrphaned(JobsagaError):
    """The node performing the job stopped heartbeating; given to ``on_final_failure`` when
    the lifeline discards a job whose last attempt died with its node."""


class EnqueueInStepError(JobsagaError, RuntimeError):
    """Raised when a workflow step inserts a job: an enqueued job cannot be compensated.

    The guard follows the step through context variables, so it also covers
    ``asyncio.to_thread`` and tasks the step creates, but not a thread the step starts itself
    (``threading.Thread``, its own executor, ``loop.run_in_executor``), which inherits none:
    an insert from there is not refused, though the rule applies (docs/workflows.md)."""
