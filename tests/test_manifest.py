"""manifest.yml against the code: scopes for every Web API method, URLs or events for every
listener, the package ships the top-level file, and `rotor-slack manifest` fills it in."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parent.parent
TOP = ROOT / "manifest.yml"
URL = "https://YOUR-HOST/slack/events"

# Bot scopes each Slack Web API method needs (https://docs.slack.dev/reference/methods).
# A method the code starts calling must be added here, with its scopes from Slack's page.
SCOPES = {
    # Called with the app-level token (its scope connections:write), not the bot's.
    "apps.connections.open": set(),
    "auth.test": set(),
    "chat.getPermalink": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.delete": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    # Approval messages live in public and private channels.
    "conversations.history": {"channels:history", "groups:history"},
    "conversations.open": {"im:write"},
    "conversations.info": {"channels:read", "groups:read"},
    "usergroups.users.list": {"usergroups:read"},
    "conversations.members": {"channels:read", "groups:read"},
    "users.info": {"users:read"},
    # Slack grants users:read.email only together with users:read.
    "users.lookupByEmail": {"users:read", "users:read.email"},
    "views.open": set(),
    "views.update": set(),
    "views.push": set(),
    "views.publish": set(),  # needs the Home tab instead, checked below
}
# Bot events and the scopes their subscription needs.
EVENT_SCOPES = {
    "app_home_opened": set(),
    "app_mention": {"app_mentions:read"},
    "app_uninstalled": set(),
    "tokens_revoked": set(),
}
INTERACTIVE = {"action", "block_action", "view", "view_submission", "view_closed"}


def manifest() -> dict:
    return yaml.safe_load(TOP.read_text())


def service_sources() -> list[Path]:
    """The service's code: app/ without the stand-ins."""
    return [p for p in (ROOT / "app").rglob("*.py") if "sandbox" not in p.relative_to(ROOT).parts]


def web_api_methods() -> dict[str, str]:
    """Every Slack Web API method the service's code names: `client.chat_postMessage(…)`, a bound
    method passed on (`self.slack.chat_update`), or `api_call("chat.postMessage")`."""
    client_methods = {
        name
        for name, value in vars(AsyncWebClient).items()
        if callable(value) and "_" in name.strip("_")
    }
    found = {}
    for path in service_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in client_methods:
                found[node.attr.replace("_", ".")] = f"{path.name}:{node.lineno}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "api_call"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found[node.args[0].value] = f"{path.name}:{node.lineno}"
    return found


def bolt_listeners() -> list[tuple[str, object, str]]:
    """(kind, what it listens to, where) of every bolt listener registered in the service:
    `@app.action(…)`, `app.view(…)(handler)`, `.command("/x")`, `.event("y")`, …"""
    kinds = INTERACTIVE | {"command", "event", "message", "shortcut", "options", "function"}
    found = []
    for path in service_sources():
        source = path.read_text()
        if "slack_bolt" not in source and "AsyncApp" not in source:
            continue  # typer's @cli.command() is not a Slack command
        module = None
        for node in ast.walk(ast.parse(source)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in kinds
                and node.args
            ):
                continue
            where = f"{path.name}:{node.lineno}"
            target = None
            if node.func.attr in {"command", "event"}:
                # Names as constants or enums are fine: evaluate them in their module.
                module = module or importlib.import_module(
                    ".".join(path.relative_to(ROOT).with_suffix("").parts)
                )
                try:
                    target = eval(ast.unparse(node.args[0]), vars(module))  # noqa: S307
                except Exception as e:
                    pytest.fail(f"{where}: cannot tell what {ast.unparse(node)} listens to: {e}")
                target = getattr(target, "value", target)
            found.append((node.func.attr, target, where))
    return found


def test_every_web_api_method_has_its_scopes():
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    methods = web_api_methods()
    assert {"chat.postMessage", "conversations.history", "auth.test"} <= methods.keys()
    for method, where in methods.items():
        assert method in SCOPES, f"{where} calls {method}: add its scopes to SCOPES in this test"
        missing = SCOPES[method] - scopes
        assert not missing, f"{where} calls {method}: add {sorted(missing)} to manifest.yml"
    if "views.publish" in methods:
        home = manifest()["features"].get("app_home", {})
        assert home.get("home_tab_enabled"), "views.publish needs features.app_home in manifest"


def test_every_listener_has_its_request_url_or_event():
    data = manifest()
    settings, features = data["settings"], data["features"]
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    commands = {c["command"]: c for c in features.get("slash_commands", [])}
    subscriptions = settings.get("event_subscriptions", {})
    events = set(subscriptions.get("bot_events", []))
    listeners = bolt_listeners()
    assert {kind for kind, _, _ in listeners} >= {"action", "view", "command"}
    for kind, target, where in listeners:
        if kind in INTERACTIVE:
            assert settings["interactivity"] == {"is_enabled": True, "request_url": URL}, where
        elif kind == "command":
            assert target in commands, f"{where}: add {target} to features.slash_commands"
            assert commands[target]["url"] == URL, where
            assert "commands" in scopes, f"{where}: slash commands need the commands scope"
        elif kind == "event":
            assert target in events, f"{where}: add {target} to event_subscriptions.bot_events"
            assert subscriptions.get("request_url") == URL, where
            assert target in EVENT_SCOPES, f"{where}: add {target}'s scopes to EVENT_SCOPES"
            missing = EVENT_SCOPES[target] - scopes
            assert not missing, f"{where}: {target} needs {sorted(missing)} in manifest.yml"
            if target == "app_home_opened":
                assert features.get("app_home", {}).get("home_tab_enabled"), where
        else:
            pytest.fail(f"{where}: teach this test what {kind} listeners need in the manifest")
    # Nothing listed that nothing serves: a stale command or event would confuse people.
    assert set(commands) == {t for k, t, _ in listeners if k == "command"}
    assert events == {t for k, t, _ in listeners if k == "event"}


def test_the_package_ships_the_top_level_file(tmp_path):
    assert files("app").joinpath("manifest.yml").read_bytes() == TOP.read_bytes()
    # Build a wheel from a copy of the tree (symlinks kept, as in a checkout) and look inside.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "manifest.yml"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "app", tree / "app", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    build = f"from setuptools import build_meta as b; print(b.build_wheel({str(tmp_path)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", build], cwd=tree, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = tmp_path / result.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("app/manifest.yml") == TOP.read_bytes()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", "manifest", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "given",
    [
        "https://bot.example.org/",
        "https://bot.example.org",
        "https://bot.example.org/slack/events",  # the full events URL, as Slack shows it
        "https://bot.example.org/slack/events/",
    ],
)
def test_manifest_fills_in_the_url(given):
    result = run("--url", given)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    url = "https://bot.example.org/slack/events"
    assert printed["settings"]["interactivity"]["request_url"] == url
    assert [c["url"] for c in printed["features"]["slash_commands"]] == [url]
    assert "YOUR-HOST" not in result.stdout.replace("YOUR-HOST replaced", "")
    # The rest is the file as it stands.
    assert result.stdout == TOP.read_text().replace("https://YOUR-HOST", "https://bot.example.org")


def test_socket_mode_variant_has_no_urls():
    result = run("--socket-mode")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["settings"]["socket_mode_enabled"] is True
    assert printed["settings"]["interactivity"] == {"is_enabled": True}
    assert all("url" not in c for c in printed["features"]["slash_commands"])
    assert "request_url" not in printed["settings"].get("event_subscriptions", {})
    assert "https://" not in yaml.safe_dump(printed)
    # Everything else is the same as over HTTP.
    over_http = manifest()
    over_http["settings"]["interactivity"].pop("request_url")
    over_http["settings"]["socket_mode_enabled"] = True
    for command in over_http["features"]["slash_commands"]:
        command.pop("url")
    over_http["settings"].get("event_subscriptions", {}).pop("request_url", None)
    assert printed == over_http


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://insecure"], "--url: Slack needs a public https:// URL"),
        (["--url", "bot.example.org"], "--url: Slack needs a public https:// URL"),
        (["--url", "https://bot.example.org?x=1"], "--url: give the address alone: no ?query"),
        (["--url", "https://localhost:8000"], "--url: localhost is not reachable from Slack"),
        (["--url", "https://127.0.0.1"], "--url: 127.0.0.1 is not reachable from Slack"),
        (["--url", "https://10.0.0.7/bot"], "--url: 10.0.0.7 is not reachable from Slack"),
        ([], "--url: required"),
        (["--socket-mode", "--url", "https://x"], "--url and --socket-mode: choose one"),
    ],
)
def test_manifest_refuses_with_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert message in line
