"""Serving the dashboard: mounted under a path inside another ASGI app (links follow the
mount), and `jobsaga web` (the token it prints once, the address it binds by default)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from jobsaga import App, Worker
from jobsaga.cli.main import cli
from jobsaga.web import Dashboard
from tests.web.conftest import FULL


def test_the_dashboard_mounts_under_a_path(board: Dashboard) -> None:
    host = Starlette(routes=[Mount("/ops", app=board.asgi)])
    with TestClient(host, base_url="http://127.0.0.1") as client:
        assert client.get("/ops/").status_code == 401
        signed = client.get(f"/ops/login?token={FULL}", follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"].endswith("/ops/")
        page = client.get("/ops/")
        assert page.status_code == 200
        assert 'href="http://127.0.0.1/ops/jobs"' in page.text  # the nav follows the mount
        assert client.get("/ops/static/dashboard.css").status_code == 200


def test_jobsaga_web_prints_a_generated_token_once_and_binds_localhost(
    db_url: str, make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_app()  # migrated
    served: dict[str, Any] = {}

    def serve(asgi: Any, **options: Any) -> None:  # instead of blocking in uvicorn
        served.update(options, asgi=asgi)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", serve)
    monkeypatch.delenv("JOBSAGA_WEB_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["web", "--url", db_url])
    assert result.exit_code == 0, result.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8080
    [line] = [
        line for line in result.output.splitlines() if line.startswith("token (shown once): ")
    ]
    token = line.removeprefix("token (shown once): ")
    with TestClient(served["asgi"], base_url="http://127.0.0.1") as client:
        assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    if "@" in db_url:
        assert (
            db_url.split("@")[0].split(":")[-1] not in result.output
            or ":" not in db_url.split("//")[1].split("@")[0]
        )


def test_a_given_token_is_not_printed(
    db_url: str, make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_app()
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda asgi, **options: None)
    result = CliRunner().invoke(cli, ["web", "--url", db_url, "--token", "ops=given-secret"])
    assert result.exit_code == 0, result.output
    assert "given-secret" not in result.output and "token (shown once)" not in result.output


class Chore(Worker, queue="chores"):
    def perform(self, job: Any) -> None:
        return None


def test_an_action_reports_who_did_it(app: App, post: Any) -> None:
    app.register(Chore)
    job = app.insert(Chore.new({}))
    seen: list[dict[str, Any]] = []
    app.telemetry.attach("test-web", ["web.action"], lambda event, m, meta: seen.append(dict(meta)))
    done = post(f"/jobs/{job.id}/cancel", follow_redirects=False)
    assert done.status_code == 303, done.text
    assert [event["token"] for event in seen] == ["ops"]
    assert "full-secret" not in repr(seen)  # the label, never the secret
