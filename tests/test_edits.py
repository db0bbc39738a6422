"""Edit before approve: correct an AI-drafted payload in Slack; the corrected job is enqueued
in Rotor and the original rejected, durably (issue: edit before approve)."""

from __future__ import annotations

import json

import pytest

from app.edits import changes, corrected, edited_from, new_job_id, read_form
from tests.conftest import (
    CAROL,
    DAVE,
    MALLORY,
    audit_rows,
    make_policy,
    posted,
    stored,
    wait_until,
)
from tests.test_decisions import decided, notices

OUTREACH = """
[[queues]]
name = "outreach"
approvers = ["U0CAROL", "U0DAVE"]
editable = ["subject", "body", "budget", "meta.tone"]
"""
DRAFT = {
    "to": "jordan@example.com",
    "subject": "Quick question about your Q3 roadmapp",
    "body": "Hi Jordan,\n\nI noticed your team is hiring <!channel> engineers.",
    "budget": 100,
    "meta": {"model": "gpt-5-mini", "tone": "warm"},
}


def text_of(message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def edit_form(slack, user, message):
    slack.click(user, message, "edit")
    return wait_until(
        lambda: next(((i, v) for i, v in slack.views.items() if v["user"] == user), None),
        what=f"the edit form for {user}",
    )


def fields(subject=None, body=None, budget=None, note=None) -> dict:
    values = {"edit-0": subject, "edit-1": body, "edit-2": budget, "note": note}
    return {block: {"value": text} for block, text in values.items() if text is not None}


# --- Pure ----------------------------------------------------------------------------------------


def test_a_form_keeps_numbers_numbers_and_refuses_what_is_not_one():
    paths = ("subject", "budget", "meta.tone", "missing", "meta")
    values, wrong = read_form(
        paths, DRAFT, {"subject": "Hello", "budget": "1,500", "meta.tone": "dry", "meta": "x"}
    )
    assert values == {"subject": "Hello", "budget": 1500, "meta.tone": "dry"}
    assert wrong == {}
    assert read_form(paths, DRAFT, {"budget": "lots"})[1] == {
        "budget": "Enter a number, like 48500 or 48,500.00."
    }
    assert read_form(paths, DRAFT, {"subject": "x" * 3001})[1] == {
        "subject": "Keep it under 3000 characters."
    }
    after = corrected(DRAFT, values)
    assert after["meta"] == {"model": "gpt-5-mini", "tone": "dry"} and after["to"] == DRAFT["to"]
    assert DRAFT["meta"]["tone"] == "warm"  # the original is untouched
    assert changes(DRAFT, after, paths) == [
        ["subject", DRAFT["subject"], "Hello"],
        ["budget", 100, 1500],
        ["meta.tone", "warm", "dry"],
    ]
    assert edited_from(new_job_id("apv_" + "a" * 32)) == "apv_" + "a" * 32
    assert edited_from("edit-apv_nothex") is None and edited_from("job_1") is None


# --- The service ---------------------------------------------------------------------------------


@pytest.fixture
def editing(start_service):
    return start_service(make_policy(queues=OUTREACH))


def test_an_edit_enqueues_the_corrected_job_and_rejects_the_original(
    editing, slack, rotor, tmp_path
):
    original = rotor.enqueue("outreach", DRAFT)
    message = posted(slack, original["id"])
    view_id, view = edit_form(slack, CAROL, message)
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert inputs["edit-0"]["initial_value"] == DRAFT["subject"]
    assert inputs["edit-1"]["multiline"] is True  # long text, several lines
    assert inputs["edit-2"]["type"] == "number_input" and inputs["edit-2"]["initial_value"] == "100"

    fixed = "Quick question about your Q3 roadmap"
    answer = slack.submit_view(
        CAROL, view_id, fields(fixed, DRAFT["body"], "1,500", note="typo in the subject")
    )
    assert answer.status_code == 200 and not answer.content
    job_id = new_job_id(original["id"])
    wait_until(lambda: rotor.status(original["id"]) == "rejected", what="the original rejected")
    job = rotor.jobs[job_id]
    assert job["payload"] == DRAFT | {"subject": fixed, "budget": 1500}
    assert job["tags"] == [f"supersedes:{original['jobId']}", f"edited-by:{CAROL}"]
    assert rotor.approvals[original["id"]]["reason"] == (
        f"Edited by u0carol: superseded by {job_id}. typo in the subject"
    )

    corrected_id = job["approvalId"]
    new_message = posted(slack, corrected_id)
    shown = text_of(new_message)
    assert f":pencil2: Edited by <@{CAROL}> from <" in shown  # links the original message
    assert "roadmapp" in shown and "→" in shown and "&lt;!channel&gt;" not in shown.split("→")[0]
    assert "*Budget*: `100` → `1500`" in shown
    # The original's message says it was superseded, linking the corrected job's message.
    wait_until(lambda: "Superseded by <" in text_of(slack.find(original["id"])[0]))

    # Four eyes: the editor is the corrected job's requester.
    slack.click(CAROL, new_message, "approve")
    wait_until(
        lambda: any("someone else must approve it" in n for n in notices(slack, CAROL)),
        what="Carol refused",
    )
    slack.click(DAVE, new_message, "approve")
    wait_until(lambda: rotor.status(corrected_id) == "approved")
    decided(slack, corrected_id)

    by_id = audit_rows(editing, tmp_path)
    assert by_id[original["id"]]["edit"] == f"superseded by {job_id}"
    assert by_id[corrected_id]["edit"] == f"edited from {original['jobId']} by {CAROL}"


def test_a_number_that_is_not_one_and_an_unchanged_form_are_refused_inside_it(
    editing, slack, rotor
):
    original = rotor.enqueue("outreach", DRAFT)
    view_id, _ = edit_form(slack, CAROL, posted(slack, original["id"]))
    wrong = slack.submit_view(CAROL, view_id, fields(DRAFT["subject"], DRAFT["body"], "lots"))
    assert wrong.json() == {
        "response_action": "errors",
        "errors": {"edit-2": "Enter a number, like 48500 or 48,500.00."},
    }
    same = slack.submit_view(CAROL, view_id, fields(DRAFT["subject"], DRAFT["body"], "100"))
    assert same.json()["response_action"] == "errors"
    assert rotor.jobs == {} and rotor.status(original["id"]) == "pending"


def test_a_non_approver_may_not_edit(editing, slack, rotor):
    original = rotor.enqueue("outreach", DRAFT)
    message = posted(slack, original["id"])
    slack.click(MALLORY, message, "edit")
    wait_until(lambda: notices(slack, MALLORY), what="Mallory refused")
    assert "not an approver" in notices(slack, MALLORY)[-1] and slack.views == {}
    # Carol's form, submitted as Mallory: refused all the same (told where the form answers).
    view_id, _ = edit_form(slack, CAROL, message)
    slack.submit_view(MALLORY, view_id, fields("Spam", DRAFT["body"], "100"))
    wait_until(lambda: notices(slack, CAROL), what="the refusal")
    assert "not an approver" in notices(slack, CAROL)[-1]
    assert rotor.jobs == {} and rotor.status(original["id"]) == "pending"


def test_a_double_submit_enqueues_once(editing, slack, rotor):
    original = rotor.enqueue("outreach", DRAFT)
    view_id, _ = edit_form(slack, CAROL, posted(slack, original["id"]))
    form = fields("Fixed subject", DRAFT["body"], "100")
    assert [slack.submit_view(CAROL, view_id, form).status_code for _ in range(2)] == [200, 200]
    wait_until(lambda: rotor.status(original["id"]) == "rejected")
    wait_until(lambda: "on its way" in " ".join(notices(slack, CAROL)), what="the second told")
    assert len(rotor.jobs) == 1
    assert [d for d in rotor.decisions if d[0] == original["id"]] == [(original["id"], "rejected")]


def edited_while_rotor_is_down(slack, rotor) -> dict:
    """An outreach job that Carol corrected while Rotor answers 503, once the edit tried Rotor."""
    original = rotor.enqueue("outreach", DRAFT)
    view_id, _ = edit_form(slack, CAROL, posted(slack, original["id"]))
    rotor.down_status = 503
    slack.submit_view(CAROL, view_id, fields("Fixed subject", DRAFT["body"], "100"))
    wait_until(lambda: rotor.get_calls > 0, what="the edit trying Rotor")
    return original


def test_rotor_down_during_the_edit_finishes_later_once(editing, slack, rotor):
    original = edited_while_rotor_is_down(slack, rotor)
    assert rotor.jobs == {} and rotor.status(original["id"]) == "pending"
    # Meanwhile nobody decides the original from Slack: its edit holds it.
    slack.click(DAVE, slack.find(original["id"])[0], "approve")
    wait_until(lambda: notices(slack, DAVE), what="Dave told")
    rotor.down_status = None
    wait_until(lambda: rotor.status(original["id"]) == "rejected", timeout=30)
    assert len(rotor.jobs) == 1 and rotor.enqueue_calls == 1
    assert rotor.decision_calls == [(original["id"], "rejected")]
    database = editing.env["DATABASE_URL"]
    wait_until(lambda: stored(database, original["id"])[0].status == "rejected", what="recorded")
    assert stored(database, original["id"])[0].decided_by == CAROL


def test_an_original_decided_outside_meanwhile_is_not_replaced(editing, slack, rotor):
    original = edited_while_rotor_is_down(slack, rotor)
    rotor.decide_outside(original["id"], "approved")
    rotor.down_status = None
    wait_until(lambda: "was not applied" in text_of(slack.find(original["id"])[0]), timeout=30)
    assert rotor.jobs == {} and rotor.enqueue_calls == 0


def test_the_rotor_stand_in_enqueues_as_documented(rotor):
    """Enqueue with tags and an idempotent jobId, get, and list by tag, as strict as Rotor."""
    import asyncio

    from app.rotor import RotorClient, RotorError

    async def calls():
        async with RotorClient(rotor.base_url, rotor.api_key) as client:
            first = await client.enqueue("outreach", {"a": 1}, ["supersedes:j1"], "edit-x")
            again = await client.enqueue("outreach", {"a": 2}, ["other"], "edit-x")
            with pytest.raises(RotorError, match="tags"):
                await client.enqueue("outreach", {}, [f"t{i}" for i in range(11)], "edit-y")
            with pytest.raises(RotorError, match="64"):
                await client.enqueue("outreach", {}, ["x" * 65], "edit-z")
            found = await client.job("outreach", "edit-x")
            missing = await client.job("outreach", "edit-nope")
            return first, again, found, missing

    first, again, found, missing = asyncio.run(calls())
    assert first.id == again.id == "edit-x" and first.state == "pending_approval"
    assert found is not None and found.tags == ["supersedes:j1"] and missing is None
    assert rotor.jobs["edit-x"]["payload"] == {"a": 1}  # the known jobId changed nothing
    listed = rotor._http.get(f"{rotor.base_url}/v1/queues/outreach/jobs", params={"tag": "other"})
    assert listed.status_code == 401  # no key: refused like every call
    headers = {"Authorization": f"Bearer {rotor.api_key}"}
    by_tag = rotor._http.get(
        f"{rotor.base_url}/v1/queues/outreach/jobs",
        params={"tag": "supersedes:j1"},
        headers=headers,
    ).json()
    assert [j["id"] for j in by_tag["jobs"]] == ["edit-x"]
