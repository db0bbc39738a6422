"""Each person's Home tab: the pending approvals they may decide, published when it would show
something new (a digest of the last view per person, shared by replicas), and paced when many
tabs change at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.config import Policy
from app.db import Store
from app.db.approvals import Waiting
from app.db.models import Approval, utcnow
from app.errors import DatabaseUnavailable
from app.slack.approvers import ApproverCheck
from app.slack.blocks.home import Layout, Shown, fit, home_view, notice_view
from app.slack.blocks.parts import Quorum
from app.slack.blocks.templates import named
from app.slack.blocks.text import mask_secrets
from app.slack.client import SlackClient, SlackError, SlackRateLimited

log = logging.getLogger(__name__)

RECENT = timedelta(hours=1)  # tabs opened since then are kept up to date
WAITING_MAX = 5_000  # pending approvals read for one refresh
PUBLISH_GAP = 0.2  # seconds between refresh publishes (views.publish allows 100+ a minute)
PAYLOAD_CHARS = 1_000  # of a payload kept for the tab: its summary line shows 120
PAYLOADS_KEPT = 2_000  # payloads kept as shown (a tab shows at most 48 approvals)
NOTICE_SECONDS = 60.0  # a notice on the tab outlives refreshes this long, so it can be read


@dataclass
class Snapshot:
    """What is pending right now, read once for every tab a refresh publishes."""

    waiting: list[Waiting]
    voters: dict[str, list[str]]
    approvals: dict[str, Approval] = field(default_factory=dict)
    # People who may decide the same approvals see the same tab: rendered once a refresh.
    views: dict[str, tuple[dict, str]] = field(default_factory=dict)


class HomeTabs:
    def __init__(
        self, store: Store, slack: SlackClient, policy: Policy, approvers: ApproverCheck
    ) -> None:
        self.store, self.slack, self.policy, self.approvers = store, slack, policy, approvers
        self._outage_shown: set[str] = set()  # tabs showing only a notice: publish again
        self._notices: dict[str, tuple[str, float]] = {}  # user -> (notice, shown until)
        self._payloads: OrderedDict[str, Any] = OrderedDict()  # approval id -> as shown, LRU

    async def show(self, user: str, notice: str | None = None) -> None:
        """Publish `user`'s tab (they opened it, or acted there), with `notice` at the top: a
        click from the tab has no response_url. With the database away, the notice alone, and
        the list again once it answers."""
        if notice is None:
            self._notices.pop(user, None)
        else:
            self._notices[user] = (notice, time.monotonic() + NOTICE_SECONDS)
        try:
            shown = await self.store.homes.opened(user, utcnow())
            await self._publish(user, shown, await self._snapshot(), notice)
        except DatabaseUnavailable:
            if notice is None:
                raise
            with contextlib.suppress(SlackError):
                await self.slack.publish_home(user, notice_view(notice).to_dict())
                self._outage_shown.add(user)

    async def refresh(self) -> None:
        """Publish again every recently opened tab whose view changed."""
        tabs = await self.store.homes.recent(utcnow() - RECENT)
        if not tabs:
            return
        snapshot = await self._snapshot()
        for tab in tabs:
            started = time.monotonic()
            if await self._publish(tab.user, tab.published, snapshot, self._notice(tab.user)):
                await asyncio.sleep(PUBLISH_GAP - (time.monotonic() - started))

    def _notice(self, user: str) -> str | None:
        notice, until = self._notices.get(user, (None, 0.0))
        if time.monotonic() > until:
            self._notices.pop(user, None)
            return None
        return notice

    async def waiting_on(self, user: str, snapshot: Snapshot | None = None) -> list[Waiting]:
        """Pending approvals `user` may decide, minus their own requests and those they have
        approved already (in a quorum), oldest first."""
        snapshot = snapshot or await self._snapshot()
        # One check per distinct set of deciders (a queue's, or a rule's), not per approval.
        allowed: dict[tuple[tuple[str, ...] | None, str | None], bool] = {}
        for w in snapshot.waiting:
            rules = self.policy.rules_of(w.queue_name, w.rules)
            who = rules.deciders
            if who not in allowed:
                allowed[who] = await self.approvers.allowed(user, *who)
        return [
            w
            for w in snapshot.waiting
            if allowed[self.policy.rules_of(w.queue_name, w.rules).deciders]
            and w.requester != user
            and user not in snapshot.voters.get(w.id, ())
        ]

    async def _snapshot(self) -> Snapshot:
        waiting = await self.store.approvals.waiting(WAITING_MAX)
        rules_of = self.policy.rules_of
        quorum = [w.id for w in waiting if rules_of(w.queue_name, w.rules).required_approvals > 1]
        votes = await self.store.votes.of(quorum)
        return Snapshot(waiting, {i: [user for user, _ in v] for i, v in votes.items()})

    async def _publish(
        self, user: str, shown: str | None, snapshot: Snapshot, notice: str | None = None
    ) -> bool:
        layout = fit(await self.waiting_on(user, snapshot))
        key = repr((layout, notice))
        if key not in snapshot.views:
            snapshot.views[key] = await self._render(layout, snapshot, notice)
        view, digest = snapshot.views[key]
        if digest == shown and user not in self._outage_shown:
            return False  # shows this already
        if not await self.store.homes.claim(user, shown, digest):
            return False  # another replica is publishing it
        try:
            await self.slack.publish_home(user, view)
        except SlackError as e:
            await self.store.homes.unclaim(user, digest)
            log.warning("home: views.publish failed: %s", e, extra={"user": user})
            if isinstance(e, SlackRateLimited):
                await asyncio.sleep(e.delay)
            return False
        self._outage_shown.discard(user)
        return True

    async def _render(
        self, layout: Layout, snapshot: Snapshot, notice: str | None
    ) -> tuple[dict, str]:
        """The view as Slack takes it, and its digest."""
        missing = [i for i in layout.shown_ids if i not in snapshot.approvals]
        snapshot.approvals.update(await self._approvals(missing))
        workspace = await self._workspace()

        def item(approval_id: str) -> Shown | None:
            approval = snapshot.approvals.get(approval_id)
            if approval is None:
                return None
            rules = self.policy.rules_of(approval.queue_name, approval.rules)
            quorum = Quorum(rules.required_approvals, snapshot.voters.get(approval_id, []))
            return Shown(approval, rules, quorum, _permalink(workspace, approval))

        def render() -> tuple[dict, str]:
            view = home_view(layout, item, notice).to_dict()
            return view, hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:32]

        # Off the event loop: forty large payloads must not hold up clicks' acks.
        return await asyncio.to_thread(render)

    async def _approvals(self, ids: list[str]) -> dict[str, Approval]:
        """The approvals with their payloads as the tab shows them: masked and cut by a bounded
        walk (in a worker thread), once per approval, since a pending approval's payload never
        changes. A refresh then reads no payload it has read before (they may be megabytes)."""
        seen = [i for i in ids if i in self._payloads]
        found = await self.store.approvals.many(seen, payloads=False)
        for approval in found.values():
            approval.payload = self._payloads[approval.id]
            self._payloads.move_to_end(approval.id)
        new = await self.store.approvals.many([i for i in ids if i not in self._payloads])

        def shown(approval: Approval) -> Any:
            rules = self.policy.rules_of(approval.queue_name, approval.rules)
            return mask_secrets(
                approval.payload, paths=rules.mask, limit=PAYLOAD_CHARS, keep=named(rules)
            )

        payloads = await asyncio.to_thread(lambda: [shown(a) for a in new.values()])
        for approval, payload in zip(new.values(), payloads, strict=True):
            approval.payload = self._payloads[approval.id] = payload
        while len(self._payloads) > PAYLOADS_KEPT:
            self._payloads.popitem(last=False)
        return found | new

    async def _workspace(self) -> str | None:
        """The workspace's address (auth.test), for links to channel messages."""
        try:
            return await self.slack.workspace_url()
        except SlackError:
            return None  # no links this time; asked again next time


def _permalink(workspace: str | None, approval: Approval) -> str | None:
    """Slack's message link format: /archives/<channel>/p<ts without its dot>."""
    if not (workspace and approval.channel and approval.ts):
        return None
    return f"{workspace.rstrip('/')}/archives/{approval.channel}/p{approval.ts.replace('.', '')}"
