"""The bolt app: listeners registered by id, services and the answer URL put in every request's
context, and one error handler that tells the person why nothing was decided."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from app import errors
from app.interactions.listeners import Services, decide, edit, home, listing
from app.interactions.notices import notice
from app.interactions.respond import ResponseUrls, tell
from app.slack.ids import ActionId, CallbackId, DecisionForm

log = logging.getLogger(__name__)


def decision_form(body: dict) -> DecisionForm | None:
    """The reject or confirm modal's metadata, when the request comes from one."""
    view = body["view"] if isinstance(body.get("view"), dict) else {}
    metadata = view.get("private_metadata")
    return DecisionForm.load(metadata) if isinstance(metadata, str) and metadata else None


def answer_url(body: dict, form: DecisionForm | None) -> str | None:
    """Where to answer the person: the request's response_url, or the one a modal carries."""
    if body.get("response_url"):
        return body["response_url"]
    return form.response_url if form else None


def home_user(body: dict, form: DecisionForm | None) -> str | None:
    """Who clicked, when the click came from their Home tab (or a modal opened from there):
    the answer goes on the tab, as there is no response_url."""
    view = body["view"] if isinstance(body.get("view"), dict) else {}
    if view.get("type") == "home" or (form and form.home):
        user = (body.get("user") or {}).get("id")
        return user if isinstance(user, str) else None
    return None


class _SameToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_bolt_app(
    client: AsyncWebClient, signing_secret: str, services: Services, slack_api_url: str
) -> AsyncApp:
    # bolt reads SLACK_BOT_TOKEN itself, then warns on every start that the token of `client`
    # (the same one) wins: not a line an operator should have to read.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(_SameToken())
    app = AsyncApp(client=client, signing_secret=signing_secret, process_before_response=False)
    response_urls = ResponseUrls(slack_api_url)

    @app.middleware
    async def carry(context: AsyncBoltContext, body: dict, next_: Callable[[], Awaitable]):
        context["services"] = services
        # Only ever Slack's own response_urls: a forged one must not aim our POSTs elsewhere.
        form = decision_form(body)
        context["response_url"] = response_urls.trusted(answer_url(body, form))
        context["home_user"] = home_user(body, form)
        await next_()

    app.action(ActionId.APPROVE.pattern())(explained(decide.approve))
    app.action(ActionId.REJECT.pattern())(explained(decide.reject))
    app.action(ActionId.VIEW_PAYLOAD.pattern())(explained(decide.view_payload))
    app.action(ActionId.OPEN_LINK.pattern())(explained(decide.open_link))
    app.view(CallbackId.REJECT.value)(explained(decide.reject_submitted))
    app.view(CallbackId.CONFIRM.value)(explained(decide.confirm_submitted))
    app.action(ActionId.EDIT.pattern())(explained(edit.edit))
    app.view(CallbackId.EDIT.value)(explained(edit.edit_submitted))
    app.event("app_home_opened")(explained(home.opened))
    app.command("/approvals")(explained(listing.approvals_command))
    app.action(ActionId.LIST_MORE.value)(explained(listing.more))
    app.error(explain)  # what fails in bolt itself, before a listener runs
    return app


async def explain(error: Exception, context: AsyncBoltContext) -> None:
    """Tell the person why nothing happened: one place turns every error into words."""
    told = notice(error)
    if told is None:
        log.error("listener failed: %s", error, exc_info=error)
        told = "Something went wrong on our side; nothing was decided. Try again."
    elif isinstance(error, errors.DatabaseUnavailable):
        log.warning("click refused: database unavailable: %s", error)
    if user := context.get("home_user"):
        await context["services"].home.show(user, told)
        return
    await tell(context.get("response_url"), told)


def explained(listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """The listener, with its errors explained by `explain` instead of raised to bolt: bolt's
    own error path resets an ack it has not noticed yet (it looks every 10 ms), so a click
    refused fast (a database that refuses connections) would reach Slack as a 404."""

    @functools.wraps(listener)  # bolt reads the wrapped function's argument names
    async def run(**kwargs):
        try:
            await listener(**kwargs)
        except Exception as error:
            await explain(error, kwargs.get("context") or {})

    return run
