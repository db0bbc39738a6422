"""The `rotor-slack` command."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.config import (
    ConfigError,
    Policy,
    Settings,
    check_database_url,
    diagnose_settings,
    load_policy,
    load_settings,
    missing_line,
    without_password,
)

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Rotor approvals in Slack.")


def _fail(error: ConfigError | str, code: int = 2) -> None:
    """Stop with one line per problem, each naming the setting and the fix."""
    problems = error.problems if isinstance(error, ConfigError) else [error]
    for problem in problems:
        typer.echo(f"rotor-slack: {problem}", err=True)
    raise typer.Exit(code)


def _load() -> tuple[Settings, Policy]:
    settings = load_settings()
    path = settings.policy_path()
    policy = load_policy(path)
    settings.require_serving(polled=policy.sync.poll is not None)
    policy.require_serving(_policy_source(path))
    return settings, policy


def _check_port(port: int, option: str = "--port") -> None:
    if not 0 < port < 65536:
        _fail(f"{option}: {port} is not a port: choose one from 1 to 65535")


def _policy_source(path: Path | None) -> str:
    return str(path) if path else "no policy file (ROTOR_SLACK_CONFIG)"


def _prepare_schema(settings: Settings, migrate: bool) -> None:
    """Upgrade the schema, or insist that it is current."""
    from app import schema

    asyncio.run(schema.prepare(settings.database_url, migrate=migrate))


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Upgrade the database schema first.")] = False,
    fd: Annotated[
        int | None,
        typer.Option(help="Serve on this listening socket, handed over by a supervisor."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics and /readyz only on this port (404 on --port)."),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(help="Address for --metrics-port (default: --host)."),
    ] = None,
) -> None:
    """Run the service."""
    import uvicorn

    from app import asgi, logs, serving
    from app.main import create_app

    logs.setup()
    try:
        settings, policy = _load()
        _prepare_schema(settings, migrate)
        if fd is None:
            _check_port(port)
            # Bound before anything starts: a busy port is one line, not a start and a stop.
            sock = serving.listen(host, port, "rotor-slack serve")
        else:
            # A handed-over socket is opened with its own family (uvicorn's fd= takes it for a
            # Unix socket, and asyncio then leaves Nagle on: ~40 ms on every answer).
            sock = socket.socket(fileno=fd)
        sockets = [sock]
        if metrics_port is not None:
            _check_port(metrics_port, "--metrics-port")
            if metrics_port == sock.getsockname()[1]:
                _fail("--metrics-port: the same port as the service's: choose another")
            where = metrics_host or host
            ops = serving.listen(where, metrics_port, "rotor-slack serve", "--metrics-port")
            sockets.append(ops)
    except ConfigError as e:
        _fail(e)
    serving.raise_open_files_limit()
    app = create_app(settings, policy)
    # What start-up built (modules, the app, its caches: some 150k objects) lives as long as
    # the process: kept out of the collector's full passes, which otherwise scan it all and
    # stall every request for 50-100 ms a few times a minute under load.
    gc.freeze()
    config = uvicorn.Config(
        asgi.OpsPort(app, metrics_port) if metrics_port is not None else app,
        host=host,
        port=port,
        **serving.LIMITS,
        log_config=None,
        access_log=False,  # our own lines log every step, with the approval id
        timeout_graceful_shutdown=3,  # then the workers get a few seconds to finish
    )
    uvicorn.Server(config).run(sockets=sockets)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to this version's."""
    from app import schema

    try:
        settings = load_settings()
        before = asyncio.run(schema.prepare(settings.database_url, migrate=True))
    except ConfigError as e:
        _fail(e)
    where, head = without_password(settings.database_url), schema.head()
    if before == head:
        typer.echo(f"{where}: the database schema is at revision {head} already: nothing to do")
    elif before is None:
        typer.echo(f"{where}: created the database schema at revision {head}")
    else:
        typer.echo(f"{where}: upgraded the database schema from revision {before} to {head}")


@cli.command()
def manifest(
    url: Annotated[
        str | None,
        typer.Option(help="Public URL of this service, https://… (or its …/slack/events URL)"),
    ] = None,
    socket_mode: Annotated[
        bool, typer.Option("--socket-mode", help="For Socket Mode: no request URLs.")
    ] = False,
) -> None:
    """Print the Slack app manifest (manifest.yml) with the request URLs pointing at URL."""
    from app import manifest as app_manifest

    text = app_manifest.text()
    if socket_mode:
        if url is not None:
            _fail("--url and --socket-mode: choose one (Socket Mode has no request URLs)")
        text = app_manifest.for_socket_mode(text)
    elif url is None:
        _fail("--url: required: the public https:// address of this service (or --socket-mode)")
    else:
        try:
            text = app_manifest.with_url(text, app_manifest.base_url(url))
        except ValueError as e:
            _fail(f"--url: {e}")
    typer.echo(text, nl=False)


@cli.command()
def check() -> None:
    """Validate configuration and reach Slack (auth.test), Rotor and the database: every
    problem at once."""
    settings, bad, problems = diagnose_settings()
    policy_problems, polled = [], False
    if "rotor_slack_config" not in bad:
        path = settings.policy_path()
        try:
            policy = load_policy(path)
            polled = policy.sync.poll is not None
            policy.require_serving(_policy_source(path))
        except ConfigError as e:
            policy_problems = e.problems
    problems += [
        missing_line(name)
        for name in settings.missing_for_serving(polled)
        if name.lower() not in bad
    ]
    problems += policy_problems
    if form := _secret_form(settings, bad):
        typer.echo(form)
    if warning := _key_warning(settings):
        typer.echo(f"rotor-slack: {warning}", err=True)
    for answer, problem in asyncio.run(_reach(settings, bad)):
        if answer:
            typer.echo(answer)
        if problem:
            problems.append(problem)
    for problem in problems:
        typer.echo(f"rotor-slack: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("configuration ok; Slack, Rotor and the database answer")


def _secret_form(settings: Settings, bad: set[str]) -> str | None:
    """How the webhook secret was read (never its value)."""
    from app import signing

    secret = settings.rotor_webhook_secret
    if secret is None or "rotor_webhook_secret" in bad:
        return None
    return f"ROTOR_WEBHOOK_SECRET: {signing.secret_forms(secret.get_secret_value())}"


def _key_warning(settings: Settings) -> str | None:
    key = settings.rotor_api_key
    if key is None or key.get_secret_value().startswith(WORKSPACE_KEY_PREFIX):
        return None
    return (
        f"warning: ROTOR_API_KEY does not look like a Rotor workspace key "
        f"({WORKSPACE_KEY_PREFIX}…): create one in the Rotor workspace's API keys"
    )


WORKSPACE_KEY_PREFIX = "rt_ws_"
Reached = tuple[str | None, str | None]  # what answered, or what is wrong


async def _reach(settings: Settings, bad: set[str]) -> list[Reached]:
    """Reach everything that is configured well enough to try, all at once."""
    checks = []
    if settings.slack_bot_token and not bad & {"slack_bot_token", "slack_api_url"}:
        checks.append(_reach_slack(settings))
    if settings.slack_app_token and not bad & {"slack_app_token", "slack_api_url"}:
        checks.append(_reach_socket_mode(settings))
    if settings.rotor_api_key and not bad & {"rotor_api_key", "rotor_api_url"}:
        checks.append(_reach_rotor(settings))
    if "database_url" not in bad:
        checks.append(_reach_database(settings))
    return list(await asyncio.gather(*checks))


async def _reach_slack(settings: Settings) -> Reached:
    import aiohttp
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    where = without_password(str(settings.slack_api_url))
    async with aiohttp.ClientSession() as session:  # closed here, whatever happens
        slack = AsyncWebClient(
            token=settings.secret("slack_bot_token"),
            base_url=str(settings.slack_api_url),
            session=session,
            timeout=10,
        )
        try:
            identity = await slack.auth_test()
        except SlackApiError as e:
            return None, (
                f"Slack refused auth.test: {e.response.get('error')}: check SLACK_BOT_TOKEN "
                "(the app's Bot User OAuth Token, xoxb-…)"
            )
        except Exception as e:
            return None, (
                f"Slack unreachable at {where} (auth.test): {type(e).__name__}: check SLACK_API_URL"
            )
    return f"Slack: signed in as {identity.get('user')} in {identity.get('team')}", None


async def _reach_socket_mode(settings: Settings) -> Reached:
    """The app-level token opens Socket Mode connections (the URL it gets is left unused)."""
    import aiohttp
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    where = without_password(str(settings.slack_api_url))
    async with aiohttp.ClientSession() as session:
        slack = AsyncWebClient(base_url=str(settings.slack_api_url), session=session, timeout=10)
        try:
            await slack.apps_connections_open(app_token=settings.secret("slack_app_token"))
        except SlackApiError as e:
            return None, (
                f"Slack refused apps.connections.open: {e.response.get('error')}: check "
                "SLACK_APP_TOKEN (an app-level token xapp-… with connections:write, and Socket "
                "Mode turned on in the app's settings)"
            )
        except Exception as e:
            return None, (
                f"Slack unreachable at {where} (apps.connections.open): {type(e).__name__}: "
                "check SLACK_API_URL"
            )
    return "Slack: Socket Mode connections open with SLACK_APP_TOKEN", None


async def _reach_rotor(settings: Settings) -> Reached:
    from app.db.models import Status
    from app.rotor import RotorClient, RotorError, RotorUnavailable

    where = without_password(str(settings.rotor_api_url))
    rotor = RotorClient(str(settings.rotor_api_url), settings.secret("rotor_api_key"))
    try:
        await rotor.list_approvals(status=Status.PENDING, limit=1)
    except RotorUnavailable as e:
        return None, f"Rotor at {where}: {e}: check ROTOR_API_URL, or try again later"
    except RotorError as e:
        setting = "ROTOR_API_KEY" if "API key" in str(e) else "ROTOR_API_URL"
        return None, f"Rotor at {where}: {e}: check {setting}"
    finally:
        await rotor.close()
    return f"Rotor: {where} answers", None


async def _reach_database(settings: Settings) -> Reached:
    from app import schema

    where = without_password(settings.database_url)
    try:
        async with asyncio.timeout(15):
            await schema.prepare(settings.database_url, migrate=False)
    except ConfigError as e:
        return None, str(e)
    except TimeoutError:
        return None, (
            f"DATABASE_URL ({where}): no answer in 15 s: start the database, "
            "or fix the host and port"
        )
    return f"Database: {where} answers, schema at revision {schema.head()}", None


@cli.command("retry-failed")
def retry_failed() -> None:
    """Put messages that Slack refused for good back in line (posts at their queue's channel)."""
    from app.db import Store

    try:  # only the database and the policy's channels: no Slack or Rotor secret is needed
        settings = load_settings()
        path = settings.policy_path()
        policy = load_policy(path)
        policy.require_serving(_policy_source(path))
        _prepare_schema(settings, migrate=False)
    except ConfigError as e:
        _fail(e)

    async def retry() -> int:
        store = Store(settings.database_url)
        try:
            return await store.outbox.retry_failed(policy.rules_for)
        finally:
            await store.close()

    count = asyncio.run(retry())
    typer.echo(f"{count} failed task(s) queued again; a running service picks them up")


@cli.command()
def audit(
    since: Annotated[str, typer.Option(help="How far back: 90s, 15m, 1h, 7d.")] = "7d",
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
) -> None:
    """Every decision to stdout, one row each, with every approver of a quorum."""
    from app import audit as trail
    from app.config import parse_duration
    from app.db import Store
    from app.db.models import utcnow

    if fmt not in ("jsonl", "csv"):
        _fail("--format: jsonl or csv")
    try:
        window = parse_duration(since)
    except ValueError as e:
        _fail(f"--since: {e}")
    try:
        settings = load_settings()
        _prepare_schema(settings, migrate=False)
    except ConfigError as e:
        _fail(e)

    async def read() -> list[dict]:
        store = Store(settings.database_url)
        try:
            decided = await store.approvals.decided_since(utcnow() - window, queue)
            votes = await store.votes.of([a.id for a in decided])
            return [trail.row(a, votes[a.id]) for a in decided]
        finally:
            await store.close()

    rows = asyncio.run(read())
    typer.echo(trail.as_csv(rows) if fmt == "csv" else trail.as_jsonl(rows), nl=False)


@cli.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port of the workspace page.")] = 8000,
    config: Annotated[
        Path | None, typer.Option(help="Policy file to try out (default: a sample policy).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Database to use (default: a temporary one; DATABASE_URL is ignored)."),
    ] = None,
    socket_mode: Annotated[
        bool, typer.Option("--socket-mode", help="Slack reaches the service over Socket Mode.")
    ] = False,
) -> None:
    """Run the service with a local Rotor and a local Slack in the browser: no accounts needed."""
    from app.sandbox.run import run_sandbox

    _check_port(port)
    if database_url is not None:
        try:
            check_database_url(database_url)
        except ValueError as e:
            _fail(f"--database-url: {e}")
    try:
        run_sandbox(port, config, database_url, socket_mode)
    except ConfigError as e:
        _fail(e)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
