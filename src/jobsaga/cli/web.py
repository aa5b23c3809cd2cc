"""``jobsaga web``: serve the dashboard (the ``jobsaga[web]`` extra)."""

from __future__ import annotations

import os

import click

from ..redaction import redact_url
from .configured import AppSource
from .options import config_options


def web_commands(cli: click.Group) -> None:
    @cli.command()
    @config_options
    @click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to bind (0.0.0.0 exposes it to the network).",
    )
    @click.option("--port", default=8080, show_default=True, type=int)
    @click.option(
        "--token",
        envvar="JOBSAGA_WEB_TOKEN",
        help="The full token (or label=token); default: one generated and printed once. Env: JOBSAGA_WEB_TOKEN.",
    )
    @click.option(
        "--read-only-token",
        envvar="JOBSAGA_WEB_READ_ONLY_TOKEN",
        help="A token that may look but not act (or label=token). Env: JOBSAGA_WEB_READ_ONLY_TOKEN.",
    )
    @click.option(
        "--refresh",
        default=2.0,
        show_default=True,
        type=float,
        help="Seconds between live refreshes.",
    )
    def web(
        source: AppSource,
        host: str,
        port: int,
        token: str | None,
        read_only_token: str | None,
        refresh: float,
    ) -> None:
        """Serve the web dashboard: jobs, queues, cron and saga runs."""
        try:
            import uvicorn

            from ..web import dashboard
        except ImportError as exc:
            raise click.ClickException(
                f"the dashboard needs the web extra: pip install 'jobsaga[web]' ({exc.name} is missing)"
            ) from None
        with source.open() as app:
            board = dashboard(
                app, token=token, read_only_token=read_only_token, refresh_seconds=refresh
            )
            shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
            click.echo(f"jobsaga dashboard of {redact_url(app.url)} on http://{shown}:{port}/")
            generated = board.generated_token
            if generated:
                click.echo(f"token (shown once): {generated}")
                click.echo(f"open: http://{shown}:{port}/login?token={generated}")
            uvicorn.run(
                board.asgi,
                host=host,
                port=port,
                log_level=os.environ.get("JOBSAGA_WEB_LOG", "warning"),
            )
