"""Durations, the policy file and environment settings: bad values name their key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.config import (
    ConfigError,
    load_policy,
    load_settings,
    parse_duration,
    parse_policy,
    without_password,
)

FULL = """
[slack]
default_channel = "C0APPROVALS"

[reminders]
after = "1h"
every = "4h"
escalate_after = 3
escalation_channel = "C0ESCALATE"
check_every = "1m"

[sync]
every = "5m"

[[queues]]
name = "payments"
channel = "C0FINANCE"
approvers = ["S0FINANCE", "U0CAROL"]
"""


SETTINGS_VARIABLES = [
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "ROTOR_API_KEY",
    "ROTOR_API_URL",
    "ROTOR_WEBHOOK_SECRET",
    "DATABASE_URL",
    "ROTOR_SLACK_CONFIG",
    "SLACK_APP_TOKEN",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Settings from this test alone: none exported by the shell, no `.env` where pytest runs."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("500ms", timedelta(milliseconds=500)),
        (" 1.5h ", timedelta(minutes=90)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1w", "-1h", "0s", "h", "1 hour", 5])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_documented_policy_parses():
    policy = parse_policy(FULL)
    assert policy.rules_for("payments").channel == "C0FINANCE"
    assert policy.rules_for("other").channel == "C0APPROVALS"
    assert policy.rules_for("payments").approvers == ("S0FINANCE", "U0CAROL")
    assert policy.rules_for("other").approvers is None
    assert policy.reminders.every == timedelta(hours=4)
    assert policy.sync.every == timedelta(minutes=5)


def test_defaults_without_a_file():
    policy = load_policy(None)
    assert policy.reminders.after == timedelta(hours=1)
    assert policy.reminders.escalate_after == 3
    with pytest.raises(ConfigError, match="slack.default_channel: required"):
        policy.require_serving()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[slack]\ndefault_chanel = 'C1'", "slack.default_chanel: unknown key"),
        ("[reminders]\nafter = 'soon'", "reminders.after: 'soon' is not a duration"),
        ("[reminders]\nescalate_after = 0", "reminders.escalate_after: "),
        ("[sync]\nevery = '0s'", "sync.every: '0s' must be longer than zero"),
        ("[[queues]]\nchannel = 'C1'", "queues[0].name: required, not set"),
        ("[[queues]]\nname = 'a'\napprovers = ['carol']", "queues[0].approvers[0]: 'carol' is not"),
        ("[[queues]]\nname='a'\n[[queues]]\nname='a'", "queues: queue 'a' is listed twice"),
        (
            "[[queues]]\nname = 'a'\nrequester = 'author..x'",
            "queues[0].requester: 'author..x' is not a payload path like requestedBy",
        ),
        ("[slack\n", "not valid TOML"),
        ("[nonsense]\nx = 1", "nonsense: unknown key"),
    ],
)
def test_bad_policy_names_the_key(text, message):
    with pytest.raises(ConfigError) as error:
        parse_policy(text, source="rotor-slack.toml")
    assert str(error.value).startswith("rotor-slack.toml: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("ROTOR_API_URL", "http://127.0.0.1:9")
    settings = load_settings()
    assert settings.slack_bot_token.get_secret_value() == "xoxb-1"
    assert str(settings.rotor_api_url) == "http://127.0.0.1:9/"
    assert settings.database_url == "sqlite+aiosqlite:///./rotor-slack.db"
    assert "xoxb-1" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-user", "SLACK_BOT_TOKEN: must be a bot token"),
        ("ROTOR_WEBHOOK_SECRET", "whsec_***", "ROTOR_WEBHOOK_SECRET: secret 1 starts with whsec_"),
        ("ROTOR_WEBHOOK_SECRET", "whsec_abc", "ROTOR_WEBHOOK_SECRET: secret 1 starts with whsec_"),
        # The second of two (rotation) is broken: it is named by its place, never shown.
        ("ROTOR_WEBHOOK_SECRET", "plain whsec_YW", "ROTOR_WEBHOOK_SECRET: secret 2 starts with"),
        ("ROTOR_WEBHOOK_SECRET", "   ", "ROTOR_WEBHOOK_SECRET: is empty"),
        ("SLACK_SIGNING_SECRET", "", "SLACK_SIGNING_SECRET: is empty: copy the Signing Secret"),
        ("SLACK_SIGNING_SECRET", "  ", "SLACK_SIGNING_SECRET: is empty: copy the Signing Secret"),
        ("ROTOR_API_KEY", "", "ROTOR_API_KEY: is empty: create a workspace API key"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must start with"),
        ("DATABASE_URL", "sqlite+aiosqlite:///:memory:", "DATABASE_URL: must name an SQLite file"),
        ("DATABASE_URL", "sqlite+aiosqlite:///", "DATABASE_URL: must name an SQLite file"),
        (
            "DATABASE_URL",
            "sqlite+aiosqlite://relative.db",
            "DATABASE_URL: an SQLite URL has three slashes before its path: "
            "sqlite\\+aiosqlite:///relative.db",
        ),
        # A bare URL would use the login's default database.
        ("DATABASE_URL", "postgresql+asyncpg://", "DATABASE_URL: must name the database"),
        ("DATABASE_URL", "postgresql+asyncpg://u@h:5432", "DATABASE_URL: must name the database"),
        ("SLACK_API_URL", "not a url", "SLACK_API_URL: "),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as error:
        load_settings()
    # The value is never shown (an empty one cannot be).
    assert not value.strip() or value not in str(error.value) or name == "DATABASE_URL"
    assert "\n" not in str(error.value)


def test_a_good_webhook_secret_passes(monkeypatch):
    monkeypatch.setenv("ROTOR_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert load_settings().rotor_webhook_secret is not None


def test_every_bad_setting_is_named_at_once(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxp-user")
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert [p.split(":")[0] for p in error.value.problems] == ["SLACK_BOT_TOKEN", "DATABASE_URL"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://app:pw@db:5432/rotor", "postgresql+asyncpg://app@db:5432/rotor"),
        (
            "postgresql+asyncpg://db/rotor?password=pw&ssl=on",
            "postgresql+asyncpg://db/rotor?ssl=on",
        ),
        # An unescaped @ in the password: SQLAlchemy itself would misread it.
        ("postgresql+asyncpg://app:p@w@db/rotor?password=pw", "postgresql+asyncpg://***@db/rotor"),
        ("sqlite+aiosqlite:///./rotor-slack.db", "sqlite+aiosqlite:///./rotor-slack.db"),
        ("https://user:pw@api.rotor.sh/", "https://user@api.rotor.sh/"),
        ("https://api.rotor.sh:8443/v1@x", "https://api.rotor.sh:8443/v1@x"),
    ],
)
def test_urls_are_shown_without_their_password(url, shown):
    assert without_password(url) == shown


def test_dot_env_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgresql+asyncpg://db/x\nSLACK_BOT_TOKEN=xoxb-f\n"
    )
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://db/x"
    assert settings.slack_bot_token.get_secret_value() == "xoxb-env"


def test_missing_secret_is_named(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError) as error:
        load_settings().require_serving()
    assert error.value.problems == [
        "SLACK_SIGNING_SECRET: required, not set",
        "ROTOR_API_KEY: required, not set",
        "ROTOR_WEBHOOK_SECRET: required, not set: copy the webhook endpoint's signing secret "
        "from Rotor, or set [sync] poll in the policy file to poll Rotor instead of webhooks",
    ]


def test_socket_mode_needs_no_signing_secret_and_polling_no_webhook_secret(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("ROTOR_API_KEY", "k")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-A1-1-x")
    settings = load_settings()
    assert settings.socket_mode
    assert settings.missing_for_serving() == ["ROTOR_WEBHOOK_SECRET"]
    settings.require_serving(polled=True)
    assert parse_policy('[sync]\npoll = "10s"').sync.poll == timedelta(seconds=10)
    assert parse_policy("").sync.poll is None


def test_an_app_token_that_is_not_one_is_named(monkeypatch):
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert error.value.problems == [
        "SLACK_APP_TOKEN: must be an app-level token starting with xapp- (Basic Information "
        "-> App-Level Tokens, scope connections:write)"
    ]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("title", '"Pay {amount"', "queues[0].title: "),
        ("title", '"{amount!r}"', "queues[0].title: "),
        ("title", '"{}"', "queues[0].title: "),
        ("fields", '["a b"]', "queues[0].fields: "),
        ("fields", str([f"f{i}" for i in range(11)]).replace("'", '"'), "queues[0].fields: "),
        ("link", '"javascript:alert({a})"', "queues[0].link: "),
        ("link", '"https://{host}/x"', "queues[0].link: "),
        ("mask", '["x..y"]', "queues[0].mask: "),
    ],
)
def test_a_malformed_template_is_a_start_up_error_naming_the_key(key, value, problem):
    with pytest.raises(ConfigError) as caught:
        parse_policy(f'[[queues]]\nname = "p"\n{key} = {value}\n')
    assert str(caught.value).startswith("policy: " + problem), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_policy_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_bytes("[slack]\ndefault_channel = 'C1' # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_policy(path)
    assert str(error.value) == f"{path}: not UTF-8 text (byte 36): save the policy file as UTF-8"
    with pytest.raises(ConfigError, match=r"^--config: cannot read .*missing.toml: No such"):
        load_policy(tmp_path / "missing.toml", "--config")
