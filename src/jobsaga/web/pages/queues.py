"""The dashboard's Queues & cron pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from ..server import Dashboard

TITLE = "Queues & cron"
HOME = "queues"


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        return dashboard.page(request, "queues.html")

    return [Route("/queues", home, name=HOME)]
