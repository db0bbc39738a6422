"""Configuration: environment settings and the TOML policy file, both validated up front."""

from __future__ import annotations

import contextlib
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from app import rules, signing, templates

DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")  # libpq's


def check_database_url(url: str) -> str:
    """A database URL this service can keep its state in; ValueError saying what to write."""
    from sqlalchemy.engine import make_url

    if not url.startswith(DATABASE_SCHEMES):
        raise ValueError(f"must start with {' or '.join(DATABASE_SCHEMES)}")
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError(
            "not a database URL: write it like postgresql+asyncpg://user:password@host:5432/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.host:
            path = url.split("://", 1)[1]
            raise ValueError(
                f"an SQLite URL has three slashes before its path: {DATABASE_SCHEMES[0]}/{path}"
            )
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                "must name an SQLite file, like sqlite+aiosqlite:///./rotor-slack.db "
                "(a database in memory would lose every approval on restart)"
            )
    elif not parsed.database:
        raise ValueError(
            "must name the database: postgresql+asyncpg://user:password@host:5432/rotor_slack"
        )
    elif parsed.query.get("sslmode", "require") not in SSL_MODES:
        raise ValueError(f"sslmode: use one of {', '.join(SSL_MODES)}")
    return url


class ConfigError(Exception):
    """Settings are missing or wrong: one line per problem, each naming its setting."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def without_password(url: str) -> str:
    """`url` fit to show: `user:secret@host` becomes `user@host`, a `password=` query goes."""
    if url.startswith(("http://", "https://")):
        return re.sub(r"^(https?://[^/@:]*):[^/]*@", r"\1@", url)
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        parsed = None
    if parsed is None or "@" in (parsed.host or ""):
        # Unreadable, or an unescaped @ in the password: hide everything that could be a login.
        hidden = re.sub(r"://.*@", "://***@", url)
        return re.sub(r"(?i)([?&])password=[^&]*&?", r"\1", hidden).rstrip("?&")
    # URL.set(password=None) keeps the password: None there means "unchanged".
    parsed = parsed._replace(password=None).difference_update_query(["password"])
    return parsed.render_as_string(hide_password=False)


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
    every: Duration = timedelta(minutes=5)  # the full reconcile
    # Look for new pending approvals this often: how approvals arrive without webhooks.
    poll: Duration | None = None


class RotorPolicy(_Strict):
    # This deployment's share of the workspace's rate limit (Free 60, Pro 300, Team 1,000).
    requests_per_minute: int = Field(default=60, ge=10, le=100_000)


MAX_EDITABLE = 20  # inputs in the edit form (a modal holds 100 blocks)

# A dotted path into a job's payload, e.g. `requestedBy` or `meta.owner.email`.
PayloadPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=200)]


class QueueKeys(_Strict):
    """The keys a queue sets, and a rule of the queue may override."""

    channel: ChannelId | None = None
    approvers: list[ApproverId] | None = None
    # Distinct approvers needed before Rotor is approved.
    required_approvals: int = Field(default=1, ge=1, le=25)
    # Where the payload names who asked: a Slack user id (U…/W…) or an email.
    requester: PayloadPath | None = None
    # Still pending this long: rejected in Rotor as expired. None: never.
    expire_after: Duration | None = None
    title: str | None = Field(default=None, max_length=500)  # header template
    fields: list[str] = []  # payload paths shown as labelled summary fields
    link: str | None = Field(default=None, max_length=2000)  # "Open in Rotor" URL template
    mask: list[str] = []  # payload paths to mask besides secret-looking ones
    # Step-up: to approve, type the value at this payload path (an amount, a name).
    confirm: PayloadPath | None = None
    # Payload paths an approver may correct (Edit): the corrected job replaces this one.
    editable: list[PayloadPath] = Field(default=[], max_length=MAX_EDITABLE)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return v if v is None else templates.check_template(v)

    @field_validator("link")
    @classmethod
    def _link(cls, v: str | None) -> str | None:
        return v if v is None else templates.check_link(v)

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str]) -> list[str]:
        if len(v) > templates.MAX_FIELDS:
            raise ValueError(f"at most {templates.MAX_FIELDS} fields (Slack shows no more)")
        return [templates.check_path(p) for p in v]

    @field_validator("mask")
    @classmethod
    def _mask(cls, v: list[str]) -> list[str]:
        return [templates.check_path(p) for p in v]


class RulePolicy(QueueKeys):
    """`[[queues.rules]]`: when `when` holds for a payload, these keys override the queue's."""

    when: str = Field(min_length=1, max_length=2000)
    name: str = Field(min_length=1, max_length=80)
    _condition: rules.Condition = PrivateAttr()

    def model_post_init(self, _context: object) -> None:
        self._condition = rules.compile_condition(self.when)  # checked by QueuePolicy first

    @property
    def condition(self) -> rules.Condition:
        return self._condition

    def applied_to(self, base: QueueRules, unchecked: bool = False) -> QueueRules:
        """`base` with the keys this rule writes (and only those) overridden."""
        written = self.model_dump(include=self.model_fields_set - {"when", "name"})
        keys = base.model_dump() | written | {"rule": self.name, "unchecked": unchecked}
        return QueueRules.model_validate(keys)


class QueuePolicy(QueueKeys):
    name: str = Field(min_length=1)
    rules: list[RulePolicy] = Field(default=[], max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _conditions(cls, data: Any) -> Any:
        """A `when` that is not valid CEL is named with its queue and rule, in one line."""
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            for rule in data["rules"]:
                if isinstance(rule, dict) and isinstance(rule.get("when"), str):
                    try:
                        rules.compile_condition(rule["when"])
                    except ValueError as e:
                        queue, name = data.get("name"), rule.get("name")
                        raise ValueError(f"queue {queue!r}, rule {name!r}: when: {e}") from None
        return data


class QueueRules(_Strict):
    """How one approval is handled: its queue's keys with every default applied. Blocks,
    decisions and workers read only this, never the policy file's raw keys."""

    queue: str
    channel: str | None = None  # the queue's channel, else slack.default_channel
    approvers: tuple[str, ...] | None = None  # None: the channel's members decide
    required_approvals: int = 1
    requester: str | None = None
    expire_after: timedelta | None = None
    title: str | None = None
    fields: tuple[str, ...] = ()
    link: str | None = None
    mask: tuple[str, ...] = ()
    confirm: str | None = None  # step-up: the payload path an approver types to approve
    editable: tuple[str, ...] = ()  # payload paths an approver may correct
    rule: str | None = None  # the `[[queues.rules]]` that applied, by name
    unchecked: bool = False  # it applied because its condition could not be evaluated

    @property
    def deciders(self) -> tuple[tuple[str, ...] | None, str | None]:
        """Who may decide: the approvers, or with none the channel's members."""
        return self.approvers, self.channel

    @property
    def templated(self) -> bool:
        return bool(self.title or self.fields or self.link)


class Policy(_Strict):
    slack: SlackPolicy = SlackPolicy()
    reminders: ReminderPolicy = ReminderPolicy()
    sync: SyncPolicy = SyncPolicy()
    rotor: RotorPolicy = RotorPolicy()
    queues: list[QueuePolicy] = []
    _rules: dict[str, QueueRules] = PrivateAttr(default_factory=dict)

    @field_validator("queues")
    @classmethod
    def _unique_queue_names(cls, queues: list[QueuePolicy]) -> list[QueuePolicy]:
        names = [q.name for q in queues]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"queue {name!r} is listed twice")
        return queues

    def require_serving(self, source: str = "policy") -> None:
        if self.slack.default_channel is None:
            raise ConfigError(
                f"{source}: slack.default_channel: required (where queues without a channel post)"
            )

    def queue(self, name: str) -> QueuePolicy | None:
        return next((q for q in self.queues if q.name == name), None)

    def rules_for(self, queue_name: str) -> QueueRules:
        """How an approval on `queue_name` is handled, every default applied."""
        rules = self._rules.get(queue_name)
        if rules is None:
            rules = self._rules[""].model_copy(update={"queue": queue_name})
        return rules

    def resolve(self, queue_name: str, payload: Any, job_id: str) -> QueueRules:
        """The rules for one approval, once when it arrives: its queue's, overridden by the
        first of the queue's `[[queues.rules]]` whose condition holds (or cannot be checked)."""
        queue = self.queue(queue_name)
        base = self.rules_for(queue_name)
        if queue is None or not queue.rules:
            return base
        read = rules.keys_read([rule.condition for rule in queue.rules])
        variables = rules.bind(payload, queue_name, job_id, read)
        for rule in queue.rules:
            outcome = rule.condition.check(variables)
            if outcome is not rules.Outcome.FAILS:
                return rule.applied_to(base, unchecked=outcome is rules.Outcome.UNCHECKED)
        return base

    def each_rules_for(self, queue_name: str) -> list[QueueRules]:
        """Every way an approval on `queue_name` may be handled: the queue's, and each rule's
        (whoever may decide any of them may see the queue)."""
        base = self.rules_for(queue_name)
        queue = self.queue(queue_name)
        return [base, *(rule.applied_to(base) for rule in (queue.rules if queue else []))]

    def rules_of(self, queue_name: str, stored: dict[str, Any] | None) -> QueueRules:
        """An approval's rules as resolved when it arrived; its queue's as the policy says
        today when none were kept (it arrived before this version kept them)."""
        if stored:
            with contextlib.suppress(ValidationError):
                return QueueRules.model_validate(stored)
        return self.rules_for(queue_name)

    def model_post_init(self, _context: object) -> None:
        # Resolved once: every click, render and sweep reads these and never the raw keys.
        self._rules[""] = QueueRules(queue="", channel=self.slack.default_channel)
        for queue in self.queues:
            keys = queue.model_dump(include=set(QueueRules.model_fields) - {"queue", "channel"})
            channel = queue.channel or self.slack.default_channel
            self._rules[queue.name] = QueueRules(queue=queue.name, channel=channel, **keys)


_WHERE_FROM = {
    "slack_signing_secret": "copy the Signing Secret from the app's Basic Information",
    "rotor_api_key": "create a workspace API key (rt_ws_…) in Rotor",
}


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
    slack_app_token: SecretStr | None = None  # set: Slack over Socket Mode, no Request URL

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v

    @field_validator("slack_signing_secret", "rotor_api_key")
    @classmethod
    def _not_empty(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # An empty signing secret fails every request from Slack (500s, not one line).
        if v is not None and not v.get_secret_value().strip():
            raise ValueError(f"is empty: {_WHERE_FROM[str(info.field_name)]}")
        return v

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xapp-"):
            raise ValueError(
                "must be an app-level token starting with xapp- (Basic Information -> "
                "App-Level Tokens, scope connections:write)"
            )
        return v

    @field_validator("rotor_webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            signing.secret_keys(v.get_secret_value())  # raises ValueError naming the problem
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return check_database_url(v)

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def missing_for_serving(self, polled: bool = False) -> list[str]:
        """Which secrets `serve` cannot run without are not set. Socket Mode needs no signing
        secret (nothing arrives over HTTP); approvals that are polled need no webhook secret."""
        required = ["slack_bot_token", "rotor_api_key"]
        if not self.socket_mode:
            required.insert(1, "slack_signing_secret")
        if not polled:
            required.append("rotor_webhook_secret")
        return [name.upper() for name in required if getattr(self, name) is None]

    def require_serving(self, polled: bool = False) -> None:
        missing = self.missing_for_serving(polled)
        if missing:
            raise ConfigError(*(missing_line(name) for name in missing))

    def secret(self, name: str) -> str:
        """A secret's text; a missing one is the line `require_serving` would give."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(missing_line(name.upper()))
        return value.get_secret_value()

    def policy_path(self) -> Path | None:
        if self.rotor_slack_config is not None:
            return self.rotor_slack_config
        default = Path("rotor-slack.toml")
        return default if default.exists() else None


def missing_line(name: str) -> str:
    """The line for a secret `serve` needs and does not have."""
    if name == "ROTOR_WEBHOOK_SECRET":
        return (
            f"{name}: required, not set: copy the webhook endpoint's signing secret from "
            "Rotor, or set [sync] poll in the policy file to poll Rotor instead of webhooks"
        )
    return f"{name}: required, not set"


def _describe(error: ValidationError, *, env: bool) -> list[str]:
    """One line per problem, naming its key."""
    return [_describe_one(e, env=env) for e in error.errors()]


SLACK_ID_KEYS = {"default_channel", "escalation_channel", "channel", "approvers"}


def _describe_one(error: ErrorDetails, *, env: bool) -> str:
    parts: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    key = ".".join(parts) or "(file)"
    if env:
        key = key.upper()
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required, not set"
    elif error["type"] == "string_pattern_mismatch" and parts[-1].split("[")[0] in SLACK_ID_KEYS:
        message = f"{error['input']!r} is not a Slack id"
    elif error["type"] == "string_pattern_mismatch":
        message = f"{error['input']!r} is not a payload path like requestedBy or meta.owner.email"
    return f"{key}: {message}"


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(*_describe(e, env=True)) from None


def diagnose_settings() -> tuple[Settings, set[str], list[str]]:
    """For `check`: every problem with the environment at once. Returns the settings with each
    bad value put back to its default, the names of those fields (checks that need them are
    skipped), and one line per problem."""
    try:
        return Settings(), set(), []
    except ValidationError as e:
        bad = {str(error["loc"][0]) for error in e.errors() if error["loc"]}
        fallback = {name: Settings.model_fields[name].default for name in bad}
        return Settings(**fallback), bad, _describe(e, env=True)


def parse_policy(text: str, source: str = "policy") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise ConfigError(*(f"{source}: {line}" for line in _describe(e, env=False))) from None


def load_policy(path: Path | None, setting: str = "ROTOR_SLACK_CONFIG") -> Policy:
    """The policy file `path` names; problems name `setting` (the variable or option)."""
    if path is None:
        return Policy()
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{setting}: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {e.start}): save the policy file as UTF-8"
        ) from None
    return parse_policy(text, source=str(path))
