"""The App the CLI tests load with ``--app tests.operations.cli_app:app`` (URL from --url)."""

from jobsaga import App

from .workers import Hold, Noop

app = App(workers=[Noop, Hold])
