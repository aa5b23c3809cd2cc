"""The web dashboard (``pip install 'jobsaga[web]'``): jobs, queues, cron and saga runs of
an app, in a browser. See ``docs/dashboard.md``.

::

    from jobsaga.web import dashboard
    asgi = dashboard(app, token="s3cret")          # mount it in FastAPI/Starlette, or:
    # jobsaga web --app myproject.jobs:app          # serves it on 127.0.0.1:8080
"""

from .server import Dashboard, dashboard

__all__ = ["Dashboard", "dashboard"]
