"""A module a database row may name: importing it is recorded, so a test can prove that
reading runs never imports what a row names (``tests/workflow/test_runs_show_imports.py``)."""

from __future__ import annotations

from jobsaga import Workflow, step

IMPORTED: list[str] = []


def _record() -> None:
    import os

    path = os.environ.get("JOBSAGA_TEST_IMPORT_MARK")
    if path:  # seen from another process too
        with open(path, "a", encoding="utf-8") as mark:
            mark.write("imported\n")
    IMPORTED.append(__name__)


_record()


class Marked(Workflow, name="tests.workflow.imported_marker:Marked"):
    """Would give ``runs show`` a richer chart, if it were (wrongly) imported."""

    @step
    def hold(self) -> int:
        return 1
