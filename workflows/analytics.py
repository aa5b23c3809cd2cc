"""The guide's analytics saga under the name ``docs/workflows.md`` uses: run it from the
project folder with ``jobsaga worker --app workflows.analytics:build_app``.

The code lives in :mod:`jobsaga.demo.analytics` (read it there), so that the installed
``jobsaga demo`` command can run the saga too; this module only re-exports its public names.
"""

from jobsaga.demo.analytics import *  # noqa: F403
