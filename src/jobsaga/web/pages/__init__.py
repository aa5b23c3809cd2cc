"""The dashboard's pages, one module per group: each has ``TITLE``, ``HOME`` (the route name
the navigation links to) and ``routes(dashboard)``."""
