"""A user's type checker catches their mistakes: the public API is typed, not ``Any``.

Each snippet is checked by mypy (strict) as a user's code would be: the good one passes, and
each mistake is reported on its line.
"""

from __future__ import annotations

from pathlib import Path

from mypy import api

GOOD = """
import sqlite3
from pydantic import BaseModel
from jobsaga import App, Worker, Job, Workflow, step
from tenacity import wait_exponential

class Send(Worker, queue="mail"):
    class Args(BaseModel):
        to: str

    def perform(self, job: Job[Args]) -> None:
        print(job.args.to)

class Flow(Workflow):
    @step(backoff=wait_exponential(multiplier=1))
    def first(self, order_id: str) -> str:
        return order_id

app = App(workers=[Send], workflows=[Flow])
app.insert(Send.new({"to": "a@example.com"}))
"""

MISTAKES = {
    "a class that is not a workflow": "App(workflows=[int])",
    "a non-connection as conn": "app.insert(Send.new({'to': 'x'}), conn=sqlite3.connect(':memory:'))",
    "a backoff that is neither seconds, a callable nor a tenacity wait": "step(backoff='soon')",
    "a misspelt node option": "app.node({'default': 5}, grace=3)",
    "args that are not an object": "Send.new(['a@example.com'])",
    "a uniqueness that is none of its forms": "Send.new({'to': 'x'}, unique='yes')",
    "a node option of the wrong type": "app.node({'default': 5}, leadership='no')",
}


def test_correct_code_passes_and_each_mistake_is_reported_on_its_line(tmp_path: Path) -> None:
    """One mypy run (it is slow to start): the good code, then each mistake on its own line;
    errors must be reported on exactly the mistakes' lines."""
    lines = GOOD.splitlines()
    expected = {len(lines) + 1 + index: name for index, name in enumerate(sorted(MISTAKES))}
    file = tmp_path / "user_code.py"
    file.write_text("\n".join([*lines, *(MISTAKES[name] for name in sorted(MISTAKES))]) + "\n")
    out, err, status = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / ".mypy"), str(file)]
    )
    reported = {int(line.split(":")[1]) for line in out.splitlines() if line.startswith(str(file))}
    assert status == 1, out + err
    assert reported == set(expected), out
