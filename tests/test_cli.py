"""The rotor-slack command: check, and one clear line for every start-up problem."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

from app.sandbox.stack import ServiceProcess, bind, free_port, service_env
from tests.conftest import PG_URL, POLICY, posted, wait_until


def run(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(tmp_path, keys, slack, rotor):
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return service_env(keys, slack, rotor, f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", policy)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    """The lines on stderr, each checked to be one of ours: no traceback, no stray output."""
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("rotor-slack: ") for line in lines), result.stderr
    return [line.removeprefix("rotor-slack: ") for line in lines]


def test_check_passes_against_slack_rotor_and_the_database(env, tmp_path):
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert problems(result) == [
        f"DATABASE_URL ({env['DATABASE_URL']}): no SQLite file at {tmp_path}/db.sqlite: fix the "
        "path, or run `rotor-slack migrate` to create it"
    ]
    assert not (tmp_path / "db.sqlite").exists()  # check leaves no empty file behind
    assert run("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""  # nothing left unclosed either
    assert "Slack: signed in" in result.stdout and "Rotor:" in result.stdout
    # How the webhook secret was read, never the secret; a workspace key is not warned about.
    assert "ROTOR_WEBHOOK_SECRET: 1 secret: whsec_ base64\n" in result.stdout
    assert env["ROTOR_WEBHOOK_SECRET"] not in result.stdout
    assert f"Database: {env['DATABASE_URL']} answers" in result.stdout


def test_check_reports_every_problem_at_once(env, tmp_path):
    policy = tmp_path / "no-channel.toml"
    policy.write_text("[reminders]\nafter = 'soon'\nevery = 'often'\n")
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "ROTOR_API_KEY"):
        env.pop(name)
    env |= {
        "ROTOR_WEBHOOK_SECRET": "whsec_abc",  # not base64
        "ROTOR_SLACK_CONFIG": str(policy),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/missing/dir/db.sqlite",
    }
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    found = problems(result)
    assert found[:4] == [
        "ROTOR_WEBHOOK_SECRET: secret 1 starts with whsec_ but is not base64 after it: "
        "copy the endpoint's signing secret from Rotor again",
        "SLACK_BOT_TOKEN: required, not set",
        "SLACK_SIGNING_SECRET: required, not set",
        "ROTOR_API_KEY: required, not set",
    ]
    assert found[4].startswith(f"{policy}: reminders.after: 'soon' is not a duration")
    assert found[5].startswith(f"{policy}: reminders.every: 'often' is not a duration")
    assert found[6] == (
        f"DATABASE_URL (sqlite+aiosqlite:///{tmp_path}/missing/dir/db.sqlite): no SQLite file "
        f"at {tmp_path}/missing/dir/db.sqlite: fix the path, or run `rotor-slack migrate` to "
        "create it"
    )
    assert len(found) == 7


def test_check_fails_clearly_on_a_wrong_token_key_and_database(env, tmp_path):
    env |= {
        "SLACK_BOT_TOKEN": "xoxb-wrong",
        "ROTOR_API_KEY": "wrong",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}",  # a directory
    }
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert set(problems(result)) == {
        "Slack refused auth.test: invalid_auth: check SLACK_BOT_TOKEN "
        "(the app's Bot User OAuth Token, xoxb-…)",
        f"Rotor at {env['ROTOR_API_URL']}/: Rotor refused the API key "
        "(HTTP 401: UNAUTHORIZED: invalid API key): check ROTOR_API_KEY",
        "warning: ROTOR_API_KEY does not look like a Rotor workspace key (rt_ws_…): "
        "create one in the Rotor workspace's API keys",
        f"DATABASE_URL (sqlite+aiosqlite:///{tmp_path}): cannot open the SQLite file "
        f"{tmp_path}: create its directory and make it writable, or point DATABASE_URL elsewhere",
    }
    assert "xoxb-wrong" not in result.stderr + result.stdout


def test_check_never_shows_a_password(env, tmp_path):
    secret = "s3cr3t-pw"
    env |= {
        "ROTOR_API_URL": f"http://rotor:{secret}@127.0.0.1:9",
        "SLACK_API_URL": f"http://slack:{secret}@127.0.0.1:9/api/",
        "DATABASE_URL": f"postgresql+asyncpg://rotor:{secret}@127.0.0.1:9/approvals",
    }
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    slack, *others = sorted(problems(result), key=lambda line: not line.startswith("Slack"))
    assert slack.startswith("Slack unreachable at http://slack@127.0.0.1:9/api/ (auth.test): ")
    assert set(others) == {
        "Rotor at http://rotor@127.0.0.1:9/: Rotor is unreachable (ConnectError): "
        "check ROTOR_API_URL, or try again later",
        "DATABASE_URL (postgresql+asyncpg://rotor@127.0.0.1:9/approvals): cannot reach the "
        "database server: Connect call failed ('127.0.0.1', 9): start PostgreSQL, or fix "
        "the host and port",
    }
    assert secret not in result.stdout + result.stderr


def test_serve_as_a_fresh_python_process_posts_and_stops_on_sigterm(env, tmp_path, slack, rotor):
    # The other tests fork their services from a preloaded server; this one starts the command
    # as a deployment does, imports and all.
    service = ServiceProcess(env, tmp_path).wait_ready()
    try:
        rotor.webhook_url = f"{service.url}/rotor/webhook"
        posted(slack, rotor.enqueue("payments", {"amount": 5})["id"])
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(15) in (0, -signal.SIGTERM)
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET: required, not set"),
        ({"SLACK_BOT_TOKEN": "xoxp-1"}, "SLACK_BOT_TOKEN: must be a bot token"),
        ({"ROTOR_SLACK_CONFIG": "/nonexistent.toml"}, "cannot read /nonexistent.toml"),
    ],
)
def test_serve_refuses_bad_configuration_with_one_line(env, tmp_path, change, message):
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    result = run("serve", "--port", "9", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_serve_refuses_a_bad_policy_naming_the_key(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[slack]\ndefault_channel = "C0A"\n[reminders]\nafter = "soon"\n')
    result = run("serve", env=env | {"ROTOR_SLACK_CONFIG": str(bad)}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"rotor-slack: {bad}: reminders.after: 'soon' is not a duration like 90s, 15m, 1h or 2d"
    )


def test_serve_and_check_refuse_a_rule_that_is_not_cel_in_one_line(env, tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text(
        '[slack]\ndefault_channel = "C0A"\n[[queues]]\nname = "payments"\n'
        '[[queues.rules]]\nwhen = "payload.amount >"\nname = "large payment"\n'
    )
    said = f"rotor-slack: {bad}: queues[0]: queue 'payments', rule 'large payment': when: "
    serve = run("serve", env=env | {"ROTOR_SLACK_CONFIG": str(bad)}, cwd=tmp_path)
    assert serve.returncode == 2 and len(serve.stderr.strip().splitlines()) == 1
    assert serve.stderr.startswith(said + "not valid CEL"), serve.stderr
    check = run("check", env=env | {"ROTOR_SLACK_CONFIG": str(bad)}, cwd=tmp_path)
    assert check.returncode != 0 and "rule 'large payment': when: not valid CEL" in check.stdout + (
        check.stderr
    )


# `serve` and `migrate` open the database the same way: each case runs one of them.
@pytest.mark.parametrize(
    ("command", "path", "message"),
    [
        (
            "migrate",
            "{tmp}/missing/db.sqlite",
            "cannot open the SQLite file {tmp}/missing/db.sqlite: create its directory and make "
            "it writable, or point DATABASE_URL elsewhere",
        ),
        (
            "serve",
            "{tmp}/db.sqlite",  # only a migration creates the file: a typo leaves none behind
            "no SQLite file at {tmp}/db.sqlite: fix the path, or run `rotor-slack migrate` to "
            "create it",
        ),
        (
            "migrate",
            "{tmp}/policy.toml",
            "{tmp}/policy.toml is not an SQLite database: point DATABASE_URL at a new file or "
            "at rotor-slack's database",
        ),
    ],
)
def test_an_sqlite_file_that_cannot_be_opened_is_one_line(env, tmp_path, command, path, message):
    url = f"sqlite+aiosqlite:///{path}".format(tmp=tmp_path)
    args = [command, "--port", "9"] if command == "serve" else [command]
    result = run(*args, env=env | {"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert problems(result) == [f"DATABASE_URL ({url}): {message.format(tmp=tmp_path)}"]


@pytest.mark.skipif(not PG_URL, reason="ROTOR_SLACK_TEST_DATABASE_URL is not set")
@pytest.mark.parametrize(
    ("command", "change", "message"),
    [
        (
            "migrate",
            {"database": "rotor_slack_no_such_database"},
            'database "rotor_slack_no_such_database" does not exist: '
            "create it (`createdb rotor_slack_no_such_database`) or fix the database name",
        ),
        (
            "serve",
            {"username": "rotor_slack_no_such_role"},
            'role "rotor_slack_no_such_role" does not exist: '
            "create the role (`createuser --pwprompt rotor_slack_no_such_role`) or fix the user",
        ),
    ],
)
def test_a_missing_postgresql_database_or_role_is_one_line(env, tmp_path, command, change, message):
    url = make_url(PG_URL).set(**change)
    shown = url._replace(password=None).render_as_string(hide_password=False)
    args = [command, "--port", "9"] if command == "serve" else [command]
    env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert problems(result) == [f"DATABASE_URL ({shown}): {message}"]
    if url.password:
        assert f":{url.password}@" not in result.stderr


@pytest.mark.skipif(not PG_URL, reason="ROTOR_SLACK_TEST_DATABASE_URL is not set")
def test_libpq_sslmode_is_understood(env, tmp_path):
    # Managed PostgreSQL hands out URLs with ?sslmode=; asyncpg takes it as its `ssl` argument.
    for mode in ("disable", "prefer"):
        env["DATABASE_URL"] = f"{PG_URL}?sslmode={mode}"
        result = run("migrate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    env["DATABASE_URL"] = f"{PG_URL}?sslmode=require"  # the local server offers no SSL
    result = run("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = problems(result)
    assert line.endswith(
        "rejected SSL upgrade: use sslmode=prefer or disable for a server without SSL, "
        "or turn SSL on there"
    )
    env["DATABASE_URL"] = f"{PG_URL}?sslmode=on"
    assert problems(run("migrate", env=env, cwd=tmp_path)) == [
        "DATABASE_URL: sslmode: use one of disable, allow, prefer, require, verify-ca, verify-full"
    ]


@pytest.mark.parametrize("command", ["sandbox", "serve"])
def test_a_busy_port_is_one_line_before_anything_starts(env, tmp_path, command):
    if command == "serve":
        assert run("migrate", env=env, cwd=tmp_path).returncode == 0
    taken = bind(0)
    port = taken.getsockname()[1]
    try:
        result = run(command, "--port", str(port), env=env, cwd=tmp_path)
    finally:
        taken.close()
    assert result.returncode == 2
    assert problems(result) == [
        f"--port: port {port} is in use on 127.0.0.1: "
        f"choose another, e.g. rotor-slack {command} --port {port + 1}"
    ]
    assert result.stdout == ""  # no worker started, nothing to shut down


def test_a_busy_or_clashing_metrics_port_is_one_line(env, tmp_path):
    assert run("migrate", env=env, cwd=tmp_path).returncode == 0
    taken = bind(0)
    port = taken.getsockname()[1]
    try:
        busy = run(
            "serve", "--port", str(free_port()), "--metrics-port", str(port), env=env, cwd=tmp_path
        )
    finally:
        taken.close()
    assert problems(busy) == [
        f"--metrics-port: port {port} is in use on 127.0.0.1: "
        f"choose another, e.g. rotor-slack serve --metrics-port {port + 1}"
    ]
    same = run("serve", "--port", str(port), "--metrics-port", str(port), env=env, cwd=tmp_path)
    assert problems(same) == ["--metrics-port: the same port as the service's: choose another"]
    assert busy.returncode == same.returncode == 2


def test_sandbox_refuses_what_serve_refuses_in_one_line(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    cases = [
        (["--port", "99999"], "--port: 99999 is not a port: choose one from 1 to 65535"),
        (
            ["--config", str(empty)],
            f"{empty}: slack.default_channel: required (where queues without a channel post)",
        ),
        (
            ["--config", "missing.toml"],
            "--config: cannot read missing.toml: No such file or directory",
        ),
        (
            ["--database-url", "sqlite+aiosqlite:///:memory:"],
            "--database-url: must name an "
            "SQLite file, like sqlite+aiosqlite:///./rotor-slack.db (a database in memory would "
            "lose every approval on restart)",
        ),
    ]
    for args, line in cases:
        result = run("sandbox", *args, cwd=tmp_path)
        assert result.returncode == 2
        assert problems(result) == [line]


def sandbox(tmp_path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start `rotor-slack sandbox`; its process and what it printed once it serves."""
    log = tmp_path / "sandbox.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "sandbox", "--port", str(free_port()), *args],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if "proxy" not in k.lower()},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "  database " in log.read_text() or process.poll() is not None,
            30,
            "the sandbox to start",
        )
    except AssertionError:
        process.kill()
        raise
    assert process.poll() is None, log.read_text()
    return process, log.read_text()


def test_sandbox_keeps_to_its_own_database_and_policy(tmp_path):
    # A deployer's shell: a real database exported, a real policy in the working directory.
    (tmp_path / "rotor-slack.toml").write_text("this would not even parse [")
    temp = tmp_path / "tmp"
    temp.mkdir()
    real = "postgresql+asyncpg://deployer:hunter2@127.0.0.1:9/production"
    env = os.environ | {"DATABASE_URL": real, "TMPDIR": str(temp)}
    process, output = sandbox(tmp_path, env=env)
    (own,) = temp.iterdir()
    assert "policy: the sample policy" in output
    assert f"database sqlite+aiosqlite:///{own}/sandbox.db (temporary, removed on exit)" in output
    assert "production" not in output and "hunter2" not in output
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0
    assert list(temp.iterdir()) == []


def test_sandbox_takes_a_policy_and_a_database_when_told(tmp_path):
    policy = tmp_path / "mine.toml"
    policy.write_text('[slack]\ndefault_channel = "C0MINE"\n')
    database = tmp_path / "mine.db"
    url = f"sqlite+aiosqlite:///{database}"
    process, output = sandbox(
        tmp_path, "--config", str(policy), "--database-url", url, env=dict(os.environ)
    )
    assert f"policy: {policy}" in output
    assert f"database {url} (from --database-url)" in output
    process.terminate()
    assert process.wait(15) == 0
    assert database.stat().st_size > 0  # migrated, and left where it was asked for


def test_check_opens_socket_mode_and_accepts_polling_without_a_webhook_secret(env, tmp_path, slack):
    slack.app_token = "xapp-1-A0ROTORSLACK-1-right"
    policy = tmp_path / "polled.toml"
    policy.write_text(POLICY.replace("[sync]", '[sync]\npoll = "10s"'))
    for name in ("SLACK_SIGNING_SECRET", "ROTOR_WEBHOOK_SECRET"):
        env.pop(name)
    env |= {"SLACK_APP_TOKEN": slack.app_token, "ROTOR_SLACK_CONFIG": str(policy)}
    assert run("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Slack: Socket Mode connections open with SLACK_APP_TOKEN" in result.stdout
    env["SLACK_APP_TOKEN"] = "xapp-1-A0ROTORSLACK-1-wrong"
    env["ROTOR_SLACK_CONFIG"] = str(tmp_path / "policy.toml")  # webhooks, and no secret for them
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert problems(result) == [
        "ROTOR_WEBHOOK_SECRET: required, not set: copy the webhook endpoint's signing secret "
        "from Rotor, or set [sync] poll in the policy file to poll Rotor instead of webhooks",
        "Slack refused apps.connections.open: invalid_auth: check SLACK_APP_TOKEN (an app-level "
        "token xapp-… with connections:write, and Socket Mode turned on in the app's settings)",
    ]


def test_sandbox_in_socket_mode_answers_over_the_socket(tmp_path):
    import httpx

    process, output = sandbox(tmp_path, "--socket-mode", env=dict(os.environ))
    try:
        assert "(Slack over Socket Mode)" in output
        page = output.split("open ")[1].split()[0]
        http = httpx.Client(base_url=page, trust_env=False, headers={"Origin": page}, timeout=30)
        answer = http.post(
            "/api/slash", json={"user": "U0CAROL", "channel": "C0APPROVALS", "text": "/approvals"}
        )
        assert answer.json() == {"status": 200}
        wait_until(
            lambda: http.get("/api/state", params={"user": "U0CAROL"}).json()["ephemerals"],
            what="the list shown to Carol",
        )
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(15) == 0
    # A clean stop says nothing alarming: the service closes its socket before Slack goes.
    log = (tmp_path / "sandbox.log").read_text()
    assert " ERROR " not in log and "Traceback" not in log, log
