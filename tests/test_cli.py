"""The rotor-slack command: manifest, check, and start-up errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.sandbox.stack import service_env
from tests.conftest import POLICY


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


def test_check_passes_against_slack_and_rotor(env, tmp_path):
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Slack: signed in" in result.stdout and "Rotor:" in result.stdout


def test_check_fails_clearly_on_a_wrong_token_and_key(env, tmp_path):
    env |= {"SLACK_BOT_TOKEN": "xoxb-wrong", "ROTOR_API_KEY": "wrong"}
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "Slack refused auth.test: invalid_auth" in result.stderr
    assert "Rotor refused the API key (HTTP 401)" in result.stderr
    assert "xoxb-wrong" not in result.stderr + result.stdout


def test_check_fails_clearly_when_unreachable(env, tmp_path):
    env |= {"ROTOR_API_URL": "http://127.0.0.1:9"}
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 1 and "Rotor is unreachable" in result.stderr


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
