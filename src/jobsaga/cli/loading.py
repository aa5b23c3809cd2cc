"""Find the user's App from ``module:attr`` (or ``module`` holding an ``app``).

Every command imports the user's code the same way: the current folder is importable (as
``python -m`` makes it), and what goes wrong while importing is one line naming the
module, never a traceback through click: an ``ImportError``, or a ``ConfigError`` raised by
a class statement (``class Mail(Worker, queu="mailers")``) or a registration, with the file
and line of the user's code that raised it.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType, TracebackType

import click

from ..app import App
from ..engines import resolve_url
from ..errors import ConfigError
from ..redaction import redact_url
from .redacting import remember_urls

ENV_APP = "JOBSAGA_APP"

PACKAGE_DIR = Path(__file__).resolve().parent.parent
"""jobsaga's own files: frames in them are not where the user's mistake is."""


def importable_project() -> None:
    """Make the current folder importable, as ``python -m`` does, so ``--app shop:app`` and
    ``jobsaga workflow graph shop.flows:Checkout`` find ``./shop`` from a console script."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def import_user_module(module_name: str, param_hint: str) -> ModuleType:
    """Import the user's module, or stop the command with one line saying why."""
    importable_project()
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        # the module itself missing needs no place; an import inside it does (file:line)
        where = user_frame(exc.__traceback__)
        at = f"{where}: " if where else ""
        raise click.BadParameter(
            f"cannot import {module_name!r}: {at}{exc}", param_hint=param_hint
        ) from None
    except ConfigError as exc:  # a class option or a registration the user's code got wrong
        raise refused(f"cannot import {module_name!r}", exc, param_hint) from None
    except Exception as exc:  # a bug in the user's module: its own frames, not click's
        raise click.ClickException(
            f"cannot import {module_name!r} ({param_hint}): the module raised\n"
            + user_traceback(exc)
        ) from None


def refused(what: str, exc: ConfigError, param_hint: str) -> click.BadParameter:
    """One line for a ``ConfigError`` the user's code raised: where in it, and why."""
    where = user_frame(exc.__traceback__)
    at = f"{where}: " if where else ""
    text = " ".join(str(exc).split())
    return click.BadParameter(f"{what}: {at}{text}", param_hint=param_hint)


NOT_USER_DIRS = (
    PACKAGE_DIR,
    Path(sysconfig.get_paths()["stdlib"]).resolve(),  # importlib's own frames
    Path(click.__file__).resolve().parent,
)


def is_user_frame(filename: str) -> bool:
    """A frame of the user's code: not jobsaga's, click's, the standard library's (the
    import machinery) or a frozen module's."""
    if filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(folder) for folder in NOT_USER_DIRS)


def user_traceback(exc: BaseException) -> str:
    """The traceback of an error the user's module raised, with only the user's frames (the
    import machinery, click and jobsaga frames left out): what a person needs to fix it."""
    shown = traceback.TracebackException.from_exception(exc)
    shown.stack = traceback.StackSummary.from_list(
        [frame for frame in shown.stack if is_user_frame(frame.filename)]
    )
    return "".join(shown.format()).rstrip()


def user_frame(tb: TracebackType | None) -> str | None:
    """``file:line`` of the innermost frame outside jobsaga (and the frozen import
    machinery): the user's class statement or call that was refused."""
    found = None
    for frame in traceback.extract_tb(tb):
        if not is_user_frame(frame.filename):
            continue
        path = Path(frame.filename)
        resolved = path.resolve()
        if resolved.is_relative_to(Path.cwd()):
            path = resolved.relative_to(Path.cwd())
        found = f"{path}:{frame.lineno}"
    return found


def load_app(spec: str | None, url: str | None = None) -> App:
    """Import ``spec`` (``package.module:attr``); with no spec, a bare App on ``url``.

    With both, ``url`` overrides the database of the imported app (before it connects)."""
    spec = spec or os.environ.get(ENV_APP)
    importable_project()  # with no --app too: a command may import module:Class itself
    if not spec:
        return App(url)
    module_name, _, attr = spec.partition(":")
    module = import_user_module(module_name, "--app")
    name = attr or "app"
    if not hasattr(module, name):
        apps = sorted(k for k, v in vars(module).items() if isinstance(v, App))
        hint = f" (its App: {', '.join(apps)})" if apps else ""
        how = "" if attr else "; give module:attribute"
        raise click.BadParameter(
            f"module {module_name!r} has no attribute {name!r}{hint}{how}", param_hint="--app"
        )
    target = getattr(module, name)
    factory = callable(target) and not isinstance(target, App)
    if isinstance(target, type) and not issubclass(target, App):
        factory = False  # a class (a worker, a workflow) is named, not instantiated
    if factory:
        try:
            target = target()
        except ConfigError as exc:
            raise refused(f"{spec!r} failed", exc, "--app") from None
    if not isinstance(target, App):
        found = target.__name__ if isinstance(target, type) else type(target).__name__
        kind = "the class" if isinstance(target, type) else "a"
        raise click.BadParameter(
            f"{spec!r} is not a jobsaga.App (found {kind} {found})", param_hint="--app"
        )
    remember_urls(url, target.url)
    if url and resolve_url(url) != target.url:
        # --url (or $JOBSAGA_DATABASE_URL) points the app's workers at that database, so one
        # app module serves every environment; too late once the app has connected.
        if target._engine is not None:
            raise click.BadParameter(
                f"{spec!r} is already connected to {redact_url(target.url)}; "
                f"cannot switch to {redact_url(url)}",
                param_hint="--url",
            )
        target.url = resolve_url(url)
    return target
