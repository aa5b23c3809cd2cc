"""One exception tree: every error jobsaga raises on purpose is a class of ``jobsaga.errors``,
rooted at ``JobsagaError``, and the tree drawn in that module's docstring is the real one.

Checked from the source, so a new ``raise ValueError(...)`` in a user-facing path, or an
exception class defined in another module, fails here rather than reaching a user who
writes ``except JobsagaError``. What may raise something else is listed below, each with
its reason: errors another library's protocol requires (click, pytest, pydantic), control
flow that must not be caught as a jobsaga error, and guards no caller can reach.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import jobsaga
from jobsaga import App, Complete, Job, Snooze, Worker, errors
from jobsaga.engines import IN_MEMORY_URL
from jobsaga.errors import JobsagaError
from jobsaga.plugins.crontab import normalize_expression
from jobsaga.runtime.node import Node
from jobsaga.telemetry import Telemetry
from jobsaga.testing import modes
from jobsaga.workflow import Retry, RunRecord, list_runs

PACKAGE = Path(jobsaga.__file__).parent

RAISE_ALLOWED: dict[tuple[str, str, str], str] = {
    # (module or package, enclosing function or "*", what is raised): why it is not a tree class
    ("jobsaga.web", "*", "starlette.exceptions.HTTPException"): (
        "the web framework's protocol for a page's HTTP status (404 for an unknown job or run):"
        " the dashboard renders it as a page, never a traceback"
    ),
    ("jobsaga.cli", "*", "click.exceptions.ClickException"): (
        "the CLI's error exit: click prints the message and exits 1 (command_error turns a "
        "JobsagaError into one)"
    ),
    ("jobsaga.cli", "*", "click.exceptions.BadParameter"): (
        "click's protocol for a bad option value: the message names the option"
    ),
    ("jobsaga.cli", "*", "click.exceptions.UsageError"): (
        "click's protocol for a bad command line: it prints the usage with the message"
    ),
    ("jobsaga.cli.jobs", "*", "click.exceptions.Exit"): (
        "the exit status of a bulk change that left a named id unchanged or was interrupted; "
        "the output already says which and why"
    ),
    ("jobsaga.cli.jobs", "*", "KeyboardInterrupt"): (
        "Ctrl-C during a bulk change: raised between batches (the one under way has "
        "committed), or by a second Ctrl-C, as Python's own SIGINT handler raises it"
    ),
    ("jobsaga.cli.runs", "*", "SystemExit"): (
        "the exit status of `runs rollback` when an undo failed; the output already says why"
    ),
    ("jobsaga.testing", "*", "AssertionError"): (
        "the toolkit's assertions fail a test as pytest expects a failed assertion to"
    ),
    ("jobsaga.testing.plugin", "*", "pytest.UsageError"): (
        "pytest's protocol for a bad command-line option or ini value of the plugin"
    ),
    ("jobsaga.testing.assertions", "*", "TypeError"): (
        "a misspelt criterion keyword (criteria are **kwargs): TypeError, as Python raises "
        "for any unexpected keyword argument"
    ),
    ("jobsaga.testing.workflows", "assert_steps", "TypeError"): (
        "a misspelt status keyword (statuses are **kwargs): TypeError, as Python raises for "
        "any unexpected keyword argument"
    ),
    ("jobsaga.workflow.context", "StepContext.actor", "AttributeError"): (
        "a property: AttributeError is how Python says an attribute is missing, which "
        "getattr(ctx, 'actor', None) and hasattr rely on"
    ),
    ("jobsaga.workflow.executor", "Execution.check_all_done", "AssertionError"): (
        "a run that neither failed nor halted left a step behind: a scheduler bug, which must "
        "fail the attempt loudly rather than pass as a success"
    ),
    ("jobsaga.workflow.endings", "*", "asyncio.exceptions.CancelledError"): (
        "the run log was closed under a rollback: the attempt is over and ends as a "
        "cancelled task ends, which no step's `except Exception` may swallow"
    ),
    ("jobsaga.worker", "Worker.perform", "NotImplementedError"): (
        "the base perform a worker must override (Python's convention); if it runs, it fails "
        "the attempt like any perform error, recorded on the job"
    ),
    ("jobsaga.engines.base", "Engine.afetch", "NotImplementedError"): (
        "only an engine with hot_path_on_loop fetches on the loop; the node asks that first"
    ),
    ("jobsaga.engines.base", "Engine.aack", "NotImplementedError"): (
        "only an engine with hot_path_on_loop acknowledges on the loop; the node asks that first"
    ),
    ("jobsaga.plugins.base", "Looper.run_once", "NotImplementedError"): (
        "abstract: every plugin defines run_once; the base is never run"
    ),
    ("jobsaga.serialization", "*", "jobsaga.serialization._Invalid"): (
        "private signal carrying the failing value's path up a recursive walk; "
        "normalize_json catches it and raises ArgsError naming the path"
    ),
    ("jobsaga.engines.base", "Engine._decode", "TypeError"): (
        "caught by row_to_job, which raises UndecodableRow naming each bad column"
    ),
    ("jobsaga.engines.sql", "*", "ValueError"): (
        "a query name given twice in jobsaga's own .sql files: a packaging bug, found when "
        "they are loaded, never caused by a caller"
    ),
    ("jobsaga.operations.jobs", "*", "AssertionError"): (
        "'unreachable' after a loop that returns or raises on its last try, for the type checker"
    ),
    ("jobsaga.runtime.executor", "Executor._backoff", "ValueError"): (
        "a NaN backoff, caught two lines below: logged, and the default backoff used"
    ),
    ("jobsaga.demo", "*", "*"): (
        "the demo's workers and sagas stand for a user's code: they fail with the user's own "
        "errors (a flaky service, a missing prompt), as a real application would"
    ),
}
"""Raises of something other than a class of ``jobsaga.errors``, and why each may stay."""

CLASS_ALLOWED: dict[tuple[str, str], str] = {
    ("jobsaga.serialization", "_Invalid"): (
        "private signal of the JSON check's recursive walk, never leaving the module: "
        "normalize_json turns it into ArgsError"
    ),
    ("jobsaga.demo", "*"): (
        "the demo's own domain errors (WarehouseBusy, PromptNotFound...), standing for a user's"
    ),
}
"""Exception classes defined outside ``jobsaga.errors``, and why each may be."""


def modules() -> Iterator[tuple[str, Path]]:
    yield "jobsaga", PACKAGE / "__init__.py"
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="jobsaga."):
        module = importlib.import_module(info.name)
        assert module.__file__ is not None
        yield info.name, Path(module.__file__)


def matches(pattern: str, name: str) -> bool:
    return pattern in ("*", name) or name.startswith(pattern + ".")


# --- (1) and (2): the tree ------------------------------------------------------------------


def tree_classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }


def test_every_exception_of_errors_is_a_jobsaga_error() -> None:
    classes = tree_classes()
    assert len(classes) > 10
    for name, cls in classes.items():
        assert issubclass(cls, JobsagaError), f"{name} is not a JobsagaError"


TREE_LINE = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\w+)(?: \[(?P<builtins>[\w, ]+)\])?")


@dataclass
class Drawn:
    parent: str
    builtins: set[str]


def drawn_tree() -> dict[str, Drawn]:
    """Each class the docstring draws, with the parent it is drawn under and the built-in
    bases it names in brackets."""
    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].splitlines()
    roots = [line.strip() for line in lines if line.strip() == "JobsagaError"]
    assert roots == ["JobsagaError"], "the tree starts at one JobsagaError line"
    drawn: dict[str, Drawn] = {}
    stack = ["JobsagaError"]
    for line in lines:
        found = TREE_LINE.match(line.removeprefix("    "))
        if found is None:
            continue
        depth = len(found["indent"]) // 4
        name = found["name"]
        assert name not in drawn, f"{name} drawn twice"
        del stack[depth + 1 :]
        named = found["builtins"]
        drawn[name] = Drawn(stack[depth], {b.strip() for b in named.split(",")} if named else set())
        stack.append(name)
    return drawn


def test_the_docstring_draws_exactly_the_tree() -> None:
    classes = tree_classes()
    drawn = drawn_tree()
    assert set(drawn) == set(classes) - {"JobsagaError"}
    for name, place in drawn.items():
        cls = classes[name]
        parents = [b.__name__ for b in cls.__bases__ if b.__module__ == errors.__name__]
        others = {b.__name__ for b in cls.__bases__ if b.__module__ == "builtins"}
        assert parents == [place.parent], f"{name} is drawn under {place.parent}, not {parents}"
        assert others == place.builtins, f"{name}: bases {others}, drawn {place.builtins}"


def test_errors_exports_the_whole_tree() -> None:
    assert set(errors.__all__) == set(tree_classes()) | {"StepFailure"}


def test_no_other_submodule_exports_an_exception() -> None:
    """One place to import an error from: ``jobsaga.errors`` (the top level re-exports the
    few an application catches, as the facade)."""
    for name, _ in modules():
        if name in ("jobsaga", errors.__name__):
            continue
        module = importlib.import_module(name)
        for exported in getattr(module, "__all__", ()):
            value = getattr(module, exported)
            assert getattr(value, "__module__", None) != errors.__name__, (
                f"{name} re-exports {exported}: import it from jobsaga.errors"
            )


def test_errors_imports_nothing_from_jobsaga() -> None:
    """The bottom of the layering: every module may raise from it."""
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("jobsaga")
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("jobsaga") for a in node.names)


def test_docs_page_lists_every_class() -> None:
    page = (PACKAGE.parent.parent / "docs" / "errors.md").read_text()
    for name in tree_classes():
        assert f"`{name}`" in page, f"docs/errors.md does not describe {name}"


# --- (3) and (4): the source ----------------------------------------------------------------


@dataclass
class Site:
    module: str
    function: str
    raised: str
    line: int


Names = dict[str, object]


def namespace(module: ModuleType, tree: ast.Module) -> Names:
    """The module's globals plus the names its functions import locally."""
    names: Names = dict(vars(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.col_offset > 0:
            relative = "." * node.level + (node.module or "")
            source = importlib.import_module(relative, module.__package__)
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(source, alias.name)
    return names


def resolve(expr: ast.expr, names: Names, owner: type | None) -> object | None:
    """What a dotted name means in the module, ``self.x`` meaning the enclosing class's."""
    if isinstance(expr, ast.Name):
        return names.get(expr.id, getattr(builtins, expr.id, None))
    if isinstance(expr, ast.Attribute):
        if isinstance(expr.value, ast.Name) and expr.value.id in ("self", "cls"):
            return inspect.getattr_static(owner, expr.attr, None) if owner else None
        inner = expr.value
        if owner and isinstance(inner, ast.Attribute) and ast.unparse(inner.value) == "self":
            # self.engine.error: engine's type is the __init__ parameter it was set from
            init = inspect.getattr_static(owner, "__init__", None)
            hint = getattr(init, "__annotations__", {}).get(inner.attr)
            kind = eval(hint, names) if isinstance(hint, str) else hint
            return inspect.getattr_static(kind, expr.attr, None) if isinstance(kind, type) else None
        base = resolve(expr.value, names, owner)
        return getattr(base, expr.attr, None) if isinstance(base, (ModuleType, type)) else None
    return None


def label(cls: type) -> str:
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def returned_class(fn: object, names: Names) -> type | None:
    """The exception class a factory function is annotated to return."""
    target = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
    annotation = getattr(target, "__annotations__", {}).get("return")
    if isinstance(annotation, str):
        annotation = eval(annotation, {**getattr(target, "__globals__", {}), **names})
    return annotation if isinstance(annotation, type) else None


Found = tuple[Site, type | None]


def judge(
    node: ast.Raise, module: str, scope: list[str], names: Names, owner: type | None
) -> Iterator[Found]:
    """The class a raise makes (None: unresolved); nothing for a re-raise of an exception
    object made elsewhere (a caught or stored error)."""
    assert node.exc is not None
    call = isinstance(node.exc, ast.Call)
    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    site = Site(module, ".".join(scope) or "<module>", ast.unparse(target), node.lineno)
    found = resolve(target, names, owner)
    if isinstance(found, type) and issubclass(found, BaseException):
        site.raised = label(found)
        yield site, found
    elif call and callable(found):
        made = returned_class(found, names)
        if made is not None:
            site.raised = label(made)
        yield site, made
    elif call:
        yield site, None


def visit(
    node: ast.AST, module: str, scope: list[str], names: Names, owner: type | None
) -> Iterator[Found]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            inner = names.get(child.name) if not scope else None
            cls = inner if isinstance(inner, type) else None
            yield from visit(child, module, [*scope, child.name], names, cls)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from visit(child, module, [*scope, child.name], names, owner)
        else:
            if isinstance(child, ast.Raise) and child.exc is not None:
                yield from judge(child, module, scope, names, owner)
            yield from visit(child, module, scope, names, owner)


def raise_sites() -> Iterator[Found]:
    """Each raise in jobsaga that makes an exception, with the class it makes."""
    for name, path in modules():
        tree = ast.parse(path.read_text())
        yield from visit(tree, name, [], namespace(importlib.import_module(name), tree), None)


def allowed(site: Site, table: dict[tuple[str, str, str], str]) -> tuple[str, str, str] | None:
    for key in table:
        module, function, raised = key
        if (
            matches(module, site.module)
            and function in ("*", site.function)
            and raised in ("*", site.raised)
        ):
            return key
    return None


def test_every_raise_makes_a_tree_class_or_is_allowed() -> None:
    used: set[tuple[str, str, str]] = set()
    wrong = []
    for site, cls in raise_sites():
        if cls is not None and issubclass(cls, JobsagaError) and cls.__module__ == "jobsaga.errors":
            continue
        key = allowed(site, RAISE_ALLOWED)
        if key is None:
            wrong.append(f"{site.module}:{site.line} ({site.function}) raises {site.raised}")
        else:
            used.add(key)
    assert not wrong, "raise a class of jobsaga.errors (or allow it, with why):\n" + "\n".join(
        wrong
    )
    assert set(RAISE_ALLOWED) == used, f"allowed but never raised: {set(RAISE_ALLOWED) - used}"


def test_no_exception_class_outside_errors() -> None:
    used: set[tuple[str, str]] = set()
    wrong = []
    for name, path in modules():
        if name == errors.__name__:
            continue
        module = importlib.import_module(name)
        tree = ast.parse(path.read_text())
        names = namespace(module, tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                found = resolve(base, names, None)
                if isinstance(found, type) and issubclass(found, BaseException):
                    key = next(
                        (
                            k
                            for k in CLASS_ALLOWED
                            if matches(k[0], name) and k[1] in ("*", node.name)
                        ),
                        None,
                    )
                    if key is None:
                        wrong.append(f"{name}:{node.lineno} class {node.name}({ast.unparse(base)})")
                    else:
                        used.add(key)
    assert not wrong, "define exceptions in jobsaga/errors.py:\n" + "\n".join(wrong)
    assert set(CLASS_ALLOWED) == used, f"allowed but not defined: {set(CLASS_ALLOWED) - used}"


# --- what a user meets ----------------------------------------------------------------------


class Noop(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


def node_without_queues() -> object:
    return Node(App(IN_MEMORY_URL), queues={})


def run_without_such_step() -> object:
    now = datetime.now(UTC)
    run = RunRecord(1, "W", None, 1, "succeeded", {}, None, None, None, now, now, now)
    return run.step("nope")


def handler_attached_twice() -> None:
    telemetry = Telemetry()
    telemetry.attach("h", "job.*", lambda *_: None)
    telemetry.attach("h", "job.*", lambda *_: None)


def unknown_testing_mode() -> None:
    with modes.testing_mode("eager"):
        pass


MISTAKES: dict[str, tuple[Callable[[], object], type[JobsagaError], type[Exception]]] = {
    "Snooze(-1)": (lambda: Snooze(-1), errors.ConfigError, ValueError),
    "Retry(delay=-1)": (lambda: Retry(delay=-1), errors.ConfigError, ValueError),
    "Node(queues={})": (node_without_queues, errors.ConfigError, ValueError),
    "a bad cron line": (lambda: normalize_expression("61 * * * *"), errors.ConfigError, ValueError),
    "a handler id twice": (handler_attached_twice, errors.ConfigError, ValueError),
    "an unknown testing mode": (unknown_testing_mode, errors.ConfigError, ValueError),
    "insert_all([Worker])": (
        lambda: App(IN_MEMORY_URL).insert_all([Noop]),  # type: ignore[list-item]
        errors.NotAJobError,
        TypeError,
    ),
    "Complete(enqueue=[args])": (
        lambda: Complete(enqueue=({"a": 1},)),  # type: ignore[arg-type]
        errors.NotAJobError,
        TypeError,
    ),
    "list_runs(limit=0)": (
        lambda: list_runs(App(IN_MEMORY_URL), limit=0),
        errors.FilterError,
        ValueError,
    ),
    "run.step('nope')": (run_without_such_step, errors.UnknownStepError, KeyError),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_caller_mistake_is_a_tree_class_and_still_the_builtin(mistake: str) -> None:
    """What was a bare ValueError/TypeError/KeyError is now in the tree, and still what an
    ``except ValueError`` written before catches."""
    make, tree_class, builtin = MISTAKES[mistake]
    with pytest.raises(tree_class) as caught:
        make()
    assert isinstance(caught.value, builtin)


def test_a_step_result_error_is_a_jobsaga_error_and_still_a_type_error() -> None:
    assert issubclass(errors.StepResultError, JobsagaError)
    assert issubclass(errors.StepResultError, TypeError)
