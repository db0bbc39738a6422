"""Configuration: environment settings and the TOML policy file, both validated up front."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """`90s`, `15m`, `1h`, `2d` (and `500ms`) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 1h or 2d")
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ChannelId = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,}$")]
# Approvers are Slack user ids (U…/W…) or user-group ids (S…).
ApproverId = Annotated[str, Field(pattern=r"^[UWS][A-Z0-9]{2,}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackPolicy(_Strict):
    default_channel: ChannelId | None = None
    # chat.postMessage allows about one message per second per channel.
    posts_per_second: float = Field(default=1.0, gt=0)
    timeout: Duration = timedelta(seconds=10)  # one Web API call


class ReminderPolicy(_Strict):
    after: Duration = timedelta(hours=1)
    every: Duration = timedelta(hours=4)
    escalate_after: int = Field(default=3, ge=1)
    escalation_channel: ChannelId | None = None
    check_every: Duration = timedelta(minutes=1)


class SyncPolicy(_Strict):
    every: Duration = timedelta(minutes=5)


class QueuePolicy(_Strict):
    name: str = Field(min_length=1)
    channel: ChannelId | None = None
    approvers: list[ApproverId] | None = None


class Policy(_Strict):
    slack: SlackPolicy = SlackPolicy()
    reminders: ReminderPolicy = ReminderPolicy()
    sync: SyncPolicy = SyncPolicy()
    queues: list[QueuePolicy] = []

    @model_validator(mode="after")
    def _unique_queue_names(self) -> Policy:
        names = [q.name for q in self.queues]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"queue {name!r} is listed twice")
        return self

    def require_serving(self, source: str = "policy") -> None:
        if self.slack.default_channel is None:
            raise ConfigError(
                f"{source}: slack.default_channel: required (where queues without a channel post)"
            )

    def queue(self, name: str) -> QueuePolicy | None:
        return next((q for q in self.queues if q.name == name), None)

    def channel_for(self, queue_name: str) -> str | None:
        queue = self.queue(queue_name)
        return (queue and queue.channel) or self.slack.default_channel

    def approvers_for(self, queue_name: str) -> list[str] | None:
        """None means anyone who can see the message may decide."""
        queue = self.queue(queue_name)
        return queue.approvers if queue else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: AnyHttpUrl = AnyHttpUrl("https://slack.com/api/")
    rotor_api_key: SecretStr | None = None
    rotor_api_url: AnyHttpUrl = AnyHttpUrl("https://api.rotor.sh")
    rotor_webhook_secret: SecretStr | None = None
    database_url: str = "sqlite+aiosqlite:///./rotor-slack.db"
    rotor_slack_config: Path | None = None

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v

    @field_validator("rotor_webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            from standardwebhooks import Webhook

            try:
                Webhook(v.get_secret_value())
            except Exception:
                raise ValueError("must be a Standard Webhooks secret (whsec_ + base64)") from None
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    def require_serving(self) -> None:
        """The four secrets `serve` cannot run without."""
        for name in ("slack_bot_token", "slack_signing_secret", "rotor_api_key"):
            if getattr(self, name) is None:
                raise ConfigError(f"{name.upper()}: required, not set")
        if self.rotor_webhook_secret is None:
            raise ConfigError("ROTOR_WEBHOOK_SECRET: required, not set")

    def policy_path(self) -> Path | None:
        if self.rotor_slack_config is not None:
            return self.rotor_slack_config
        default = Path("rotor-slack.toml")
        return default if default.exists() else None


def _describe(error: ValidationError, *, env: bool) -> str:
    first = error.errors()[0]
    parts: list[str] = []
    for part in first["loc"]:
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    key = ".".join(parts) or "(file)"
    if env:
        key = key.upper()
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required, not set"
    elif first["type"] == "string_pattern_mismatch":
        message = f"{first['input']!r} is not a Slack id"
    return f"{key}: {message}"


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe(e, env=True)) from None


def parse_policy(text: str, source: str = "policy") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e, env=False)}") from None


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"ROTOR_SLACK_CONFIG: cannot read {path}: {e.strerror}") from None
    return parse_policy(text, source=str(path))
