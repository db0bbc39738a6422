"""The `rotor-slack` command."""

from __future__ import annotations

import asyncio
import sys
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from app.config import ConfigError, Policy, Settings, load_policy, load_settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Rotor approvals in Slack.")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"rotor-slack: {message}", err=True)
    raise typer.Exit(code)


def _load() -> tuple[Settings, Policy]:
    settings = load_settings()
    path = settings.policy_path()
    policy = load_policy(path)
    settings.require_serving()
    policy.require_serving(str(path) if path else "no policy file (ROTOR_SLACK_CONFIG)")
    return settings, policy


async def _prepare_schema(settings: Settings, migrate: bool) -> None:
    """Upgrade the schema, or insist that it is current."""
    from app import schema
    from app.store import Store

    store = Store(settings.database_url)
    try:
        if migrate:
            await schema.upgrade(store)
        await schema.require_current(store)
    except OSError as e:
        raise ConfigError(f"DATABASE_URL: cannot reach the database: {e}") from None
    finally:
        await store.close()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Upgrade the database schema first.")] = False,
) -> None:
    """Run the service."""
    import uvicorn

    from app import logs, serving
    from app.main import create_app

    logs.setup()
    try:
        settings, policy = _load()
        asyncio.run(_prepare_schema(settings, migrate))
    except ConfigError as e:
        _fail(str(e))
    serving.raise_open_files_limit()
    uvicorn.run(
        create_app(settings, policy),
        host=host,
        port=port,
        **serving.LIMITS,
        log_config=None,
        access_log=False,  # our own lines log every step, with the approval id
        timeout_graceful_shutdown=3,  # then the workers get a few seconds to finish
    )


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to this version's."""
    from app import schema

    try:
        settings = load_settings()
        asyncio.run(_prepare_schema(settings, migrate=True))
    except ConfigError as e:
        _fail(str(e))
    typer.echo(f"database schema is at revision {schema.head()}")


@cli.command()
def manifest(
    url: Annotated[str, typer.Option(help="Public base URL of this service, https://…")],
) -> None:
    """Print manifest.yml with the request URLs pointing at URL."""
    if not url.startswith("https://"):
        _fail("--url: Slack needs a public https:// URL")
    text = files("app").joinpath("manifest.yml").read_text()
    typer.echo(text.replace("https://bot.example.com", url.rstrip("/")), nl=False)


@cli.command()
def check() -> None:
    """Validate configuration and reach Slack (auth.test) and Rotor."""
    try:
        settings, policy = _load()
    except ConfigError as e:
        _fail(str(e))
    problems = asyncio.run(_reach(settings))
    for problem in problems:
        typer.echo(f"rotor-slack: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("configuration ok; Slack and Rotor answer")


async def _reach(settings: Settings) -> list[str]:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from app.rotor import RotorClient, RotorError

    problems = []
    slack = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=str(settings.slack_api_url)
    )
    try:
        identity = await slack.auth_test()
        typer.echo(f"Slack: signed in as {identity.get('user')} in {identity.get('team')}")
    except SlackApiError as e:
        problems.append(f"Slack refused auth.test: {e.response.get('error')}")
    except Exception as e:
        problems.append(f"Slack unreachable at {settings.slack_api_url}: {type(e).__name__}")
    rotor = RotorClient(str(settings.rotor_api_url), settings.rotor_api_key.get_secret_value())
    try:
        await rotor.list_approvals(status="pending", limit=1)
        typer.echo(f"Rotor: {settings.rotor_api_url} answers")
    except RotorError as e:
        problems.append(f"Rotor at {settings.rotor_api_url}: {e}")
    finally:
        await rotor.close()
    return problems


@cli.command("retry-failed")
def retry_failed() -> None:
    """Put messages that Slack refused for good back in line (posts at their queue's channel)."""
    from app.store import Store

    try:
        settings, policy = _load()
    except ConfigError as e:
        _fail(str(e))

    async def retry() -> int:
        await _prepare_schema(settings, migrate=False)
        store = Store(settings.database_url)
        try:
            return await store.retry_failed(policy.channel_for)
        finally:
            await store.close()

    count = asyncio.run(retry())
    typer.echo(f"{count} failed task(s) queued again; a running service picks them up")


@cli.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port of the workspace page.")] = 8000,
    config: Annotated[Path | None, typer.Option(help="Policy file to try out.")] = None,
) -> None:
    """Run the service with a local Rotor and a local Slack in the browser: no accounts needed."""
    from app.sandbox.run import run_sandbox

    try:
        run_sandbox(port, config)
    except ConfigError as e:
        _fail(str(e))


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
