"""An App that holds a password in its URL and is connected when imported (the ``--url`` with
an ``--app`` that already connected case of ``tests/operations/test_cli_secrets.py``)."""

import os

from jobsaga import App

app = App(os.environ["JOBSAGA_TEST_SECRET_APP_URL"])
app.engine  # noqa: B018 - bound to its database at import: --url can no longer switch it
