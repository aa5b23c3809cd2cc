"""What a person gets wrong on the command line or in the ``--app`` module, told in one
line: a class option misspelt in the app's code, a worker without ``perform``, an ``--app``
naming an attribute the module lacks, a bad flag or ``--set`` value (named as typed), a
queue given twice. Through click's runner, and the import error in a real process (no
traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobsaga.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]

MISSPELT = """\
from jobsaga import App, Worker


class Mail(Worker, queu="mailers"):
    def perform(self, job):
        return None


app = App(workers=[Mail])
"""

NO_PERFORM = """\
from jobsaga import App, Worker


class Mail(Worker, queue="mailers"):
    def preform(self, job):
        return None


app = App(workers=[Mail])
"""

FLOWS = """\
from jobsaga import App, Workflow, step


class Checkout(Workflow, inputs=["order_id"]):
    @step
    def reserve(self, order_id, ctx):
        return order_id


shop = App()
"""


@pytest.fixture(autouse=True)
def _project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A user's project folder as the current folder, with nothing of it importable yet
    (the loader adds the folder to ``sys.path``; the fixture restores it)."""
    monkeypatch.chdir(tmp_path)
    for variable in [v for v in os.environ if v.startswith("JOBSAGA_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield


def module(source: str) -> str:
    """Write ``source`` as a module of the current folder under a fresh name."""
    name = f"user_{uuid.uuid4().hex[:10]}"
    Path(f"{name}.py").write_text(source, "utf-8")
    return name


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    """The ``Error: ...`` line, checked to be the only one (besides click's usage lines)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and "validation error" not in result.output
    return lines[0]


def test_a_misspelt_class_option_in_the_app_is_one_line_with_where_and_a_suggestion() -> None:
    name = module(MISSPELT)
    result = run("worker", "--app", name)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --app: cannot import {name!r}: {name}.py:4: "
        "worker Mail: unknown option 'queu': did you mean 'queue'?"
    )


def test_a_worker_without_perform_in_the_app_is_one_line() -> None:
    name = module(NO_PERFORM)
    result = run("runs", "list", "--app", name)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --app: cannot import {name!r}: {name}.py:9: "
        "worker Mail has no perform(self, job) method"
    )


def test_the_real_process_prints_no_traceback() -> None:
    name = module(MISSPELT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSAGA_")}
    done = subprocess.run(
        [sys.executable, "-c", "from jobsaga.cli.main import cli; cli()", "worker", "--app", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"Error: Invalid value for --app: cannot import {name!r}: {name}.py:4: "
        "worker Mail: unknown option 'queu': did you mean 'queue'?"
    )
    assert "Traceback" not in done.stderr


def test_app_naming_a_missing_attribute_says_so_and_names_the_apps_there() -> None:
    name = module(FLOWS)
    result = run("runs", "list", "--app", f"{name}:nosuch")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --app: module {name!r} has no attribute 'nosuch' (its App: shop)"
    )
    bare = run("runs", "list", "--app", name)  # no :attribute means app
    assert error_line(bare).endswith(
        f"module {name!r} has no attribute 'app' (its App: shop); give module:attribute"
    )
    a_class = run("runs", "list", "--app", f"{name}:Checkout")
    assert error_line(a_class).endswith("is not a jobsaga.App (found the class Checkout)")


def test_workflow_graph_imports_module_class_from_the_current_folder_without_app() -> None:
    name = module(FLOWS)
    result = run("workflow", "graph", f"{name}:Checkout")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart TD\n")
    assert 's_reserve["reserve"]' in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--grace-period", "-1"],
            "--grace-period: Input should be greater than or equal to 0 (got -1.0)",
        ),
        (
            ["--set", "grace_period=-1"],
            "--set grace_period=-1: Input should be greater than or equal to 0",
        ),
        (["--set", "queues.x=0"], "--set queues.x=0: Input should be greater than or equal to 1"),
        (["--set", "queus=3"], "unknown key queus (from --set queus=3): did you mean 'queues'?"),
        (["--no-leadership", "--set", "leader_lease=0"], "--set leader_lease=0: Input should be"),
        (
            ["--set", "plugins.leader.enabled=false"],
            "unknown key plugins (from --set plugins.leader.enabled=false): "
            "plugins.leader.enabled is now leadership",
        ),
    ],
)
def test_a_flag_or_set_error_names_the_flag_as_typed(args: list[str], expected: str) -> None:
    result = run("worker", *args)
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith("Error: invalid jobsaga configuration: " + expected), line
    assert "overrides" not in line


def test_a_url_in_a_set_is_masked_in_the_error() -> None:
    result = run("worker", "--set", 'url=["postgresql://ada:s3cr3tpw@db/shop"]')
    assert result.exit_code == 2
    assert "s3cr3tpw" not in result.output
    assert error_line(result).endswith(
        '--set url=["postgresql://ada:***@db/shop"]: Input should be a valid string'
    )


def test_a_queue_given_twice_is_refused_naming_it() -> None:
    result = run("worker", "-q", "mailers=5", "-q", "default=2", "-q", "mailers=3")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: Invalid value for --queue: queue 'mailers' is given twice "
        "(mailers=5 and mailers=3): give each queue once"
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("mailers=0", "a queue's limit is how many of its jobs run at once, at least 1"),
        ("mailers", "use NAME=LIMIT, e.g. default=10"),
        ("=5", "use NAME=LIMIT, e.g. default=10"),
    ],
)
def test_a_bad_queue_flag_says_what_is_wrong(given: str, said: str) -> None:
    result = run("config", "-q", given)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: Invalid value for --queue: {given!r}: {said}")


RAISES = """\
from jobsaga import App


def rate():
    return 1 / 0


RATE = rate()
app = App()
"""

IMPORTS_MISSING = """\
from jobsaga import App
import nosuch_library_for_jobsaga_tests

app = App()
"""


def test_a_module_that_raises_shows_only_its_own_frames() -> None:
    name = module(RAISES)
    result = run("jobs", "list", "--app", name)
    assert result.exit_code == 1
    out = result.output
    assert out.startswith(f"Error: cannot import {name!r} (--app): the module raised\n")
    assert f'{name}.py", line 8, in <module>' in out and f'{name}.py", line 5, in rate' in out
    assert out.rstrip().endswith("ZeroDivisionError: division by zero")
    frames = [line for line in out.splitlines() if line.strip().startswith('File "')]
    assert len(frames) == 2, out  # no importlib, click or jobsaga frame


def test_a_missing_import_inside_the_module_names_where() -> None:
    name = module(IMPORTS_MISSING)
    result = run("jobs", "list", "--app", name)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: Invalid value for --app: cannot import {name!r}: {name}.py:2: "
        "No module named 'nosuch_library_for_jobsaga_tests'"
    )


@pytest.mark.parametrize("command", ["worker", "config"])
def test_a_check_across_keys_names_the_flags_that_gave_them(command: str) -> None:
    """rescue_after against heartbeat_interval is checked as the node is built, after each
    key's own check: its error names the flags too, not only the keys."""
    result = run(
        command, "--url", "sqlite:///x.db", "--rescue-after", "1", "--set", "heartbeat_interval=2"
    )
    assert result.exit_code == 2
    assert error_line(result).startswith(
        "Error: --set heartbeat_interval=2, --rescue-after: rescue_after (1.0s) must be at least "
        "twice heartbeat_interval (2.0s)"
    )


def test_workflow_graph_of_a_module_that_fails_to_import_is_one_error() -> None:
    """``workflow graph module:Class`` imports the module as --app does: a refused class
    option is one line, a module that raises shows its own frames, a dotted name that is no
    module is looked up among the app's workflows."""
    misspelt = module(MISSPELT)
    result = run("workflow", "graph", f"{misspelt}:Nope")
    assert result.exit_code == 2
    assert error_line(result).endswith(
        f"cannot import {misspelt!r}: {misspelt}.py:4: worker Mail: unknown option 'queu': "
        "did you mean 'queue'?"
    )
    raising = module(RAISES)
    result = run("workflow", "graph", f"{raising}:Flow")
    assert result.exit_code == 1
    assert result.output.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "click" not in result.output and "importlib" not in result.output
    result = run("workflow", "graph", "no.such.module.Flow")
    assert result.exit_code == 1 and "no workflow 'no.such.module.Flow'" in result.output


def test_workflow_graph_of_module_class_says_what_is_wrong_with_it() -> None:
    name = module(MISSPELT.replace('queu="mailers"', 'queue="mailers"'))
    missing = run("workflow", "graph", f"{name}:nosuch")
    assert missing.exit_code == 2
    assert error_line(missing).endswith(f"module {name!r} has no attribute 'nosuch'")
    not_a_workflow = run("workflow", "graph", f"{name}:Mail")
    assert error_line(not_a_workflow).endswith("is not a Workflow class (found the class Mail)")
    no_module = run("workflow", "graph", "nosuch_module_for_jobsaga:W")
    assert error_line(no_module).endswith(
        "cannot import 'nosuch_module_for_jobsaga': No module named 'nosuch_module_for_jobsaga'"
    )
