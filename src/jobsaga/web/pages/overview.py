"""The dashboard's Overview pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from ..server import Dashboard

TITLE = "Overview"
HOME = "overview"


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        return dashboard.page(request, "overview.html")

    return [Route("/", home, name=HOME)]
