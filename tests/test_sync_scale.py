"""The sync reaches every pending approval: past Rotor's 100th page and our 1,000th row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app import schema
from app.config import parse_policy
from app.db import Store
from app.db.models import Approval, Status, utcnow
from app.intake import Intake, OutsideDecisions
from app.rotor import RotorClient
from app.workers.sync import Sync

POLICY = parse_policy('[slack]\ndefault_channel = "C0APPROVALS"\n[sync]\nevery = "1h"\n')
PENDING = 10_100  # more than 100 pages of 100 in Rotor's list


def _id(i: int) -> str:
    return f"apv_{i:032x}"


def _rotor_approval(i: int, status: str) -> dict:
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": _id(i),
        "jobId": f"job_{i}",
        "queueName": "ops",
        "payload": {"i": i},
        "status": status,
        "createdAt": created,
        "workspaceId": "ws_test",
    }


async def _one_pass(database_url: str, rotor) -> tuple[int, int]:
    # Rotor lists newest first, here in id order: the 20 listed last never reached us; the
    # 10 with the highest ids, pending here after our first 1,000 rows, were decided in Rotor.
    for i in reversed(range(PENDING + 10)):
        rotor.approvals[_id(i)] = _rotor_approval(i, "pending" if i < PENDING else "approved")
    store = Store(database_url)
    try:
        await schema.upgrade(store)
        now = utcnow()
        rows = [
            {
                "id": _id(i),
                "job_id": f"job_{i}",
                "queue_name": "ops",
                "payload": {},
                "created_at": now,
                "status": Status.PENDING,
                "reminders_sent": 0,
            }
            for i in range(PENDING + 10)
            if not PENDING - 20 <= i < PENDING
        ]
        async with store.session() as s:
            await (await s.connection()).execute(Approval.__table__.insert(), rows)
        async with RotorClient(rotor.base_url, rotor.api_key) as client:
            intake = Intake(store, POLICY, lambda: None)
            return await Sync(
                store,
                client,
                intake,
                OutsideDecisions(store, client, intake, lambda: None),
                POLICY,
                lambda: None,
            ).sync_once()
    finally:
        await store.close()


def test_one_pass_reaches_every_pending_approval_on_both_sides(database_url, rotor):
    recorded, decided = asyncio.run(_one_pass(database_url, rotor))
    assert (recorded, decided) == (20, 10)
