"""`rotor-slack sandbox` in real headless Chromium: enqueue, approve, reject, list; the page fits
the window, keeps a selection across refreshes, and refuses requests from other sites."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.sandbox.stack import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def sandbox_process(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "DATABASE_URL"}
    log = tmp_path / "sandbox.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "sandbox", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/api/state", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert f"open {url}" in log.read_text()
    yield url, process
    process.terminate()
    process.wait(15)


@pytest.fixture
def sandbox_url(sandbox_process):
    return sandbox_process[0]


@pytest.fixture
def viewport():
    return {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module's tests; each test gets a fresh context (no shared storage)."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, sandbox_url, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(sandbox_url)
    yield page
    context.close()


def enqueue(page, preset: str) -> None:
    """Enqueue a job from the Rotor panel: one of its presets, as it stands."""
    page.get_by_role("button", name=preset).click()
    page.click("#enqueue")


def test_enqueue_approve_reject_and_list_in_the_browser(page):
    expect = playwright.expect
    timeline, approvals = page.locator("#timeline"), page.locator("#approvals")
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0CAROL")

    # Enqueue a large payment from the Rotor panel; its message appears in #finance.
    enqueue(page, "Large payment")
    page.click('[data-channel="C0FINANCE"]')
    expect(timeline).to_contain_text("Pay 48500 EUR to Acme GmbH")  # the queue's title
    expect(timeline).to_contain_text("Beneficiary name")  # and its summary fields
    expect(timeline).not_to_contain_text("DE89370400440532013000")  # masked by the policy
    expect(timeline).not_to_contain_text("sk_live_should_be_masked")
    expect(approvals).to_contain_text("pending")
    expect(page.locator("#role")).to_contain_text("approves payments")
    expect(timeline).to_contain_text("Requested by@Visitor")  # a field: label, then value

    # Approve, through the confirm dialog: payments need two approvers, so the message shows
    # the progress and keeps its buttons until a member of the finance group approves too.
    page.click('.msg [data-action^="approve:"]')
    page.click("#confirm button.primary")
    expect(timeline).to_contain_text("1 of 2 approvals: @Carol")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sandbox.png"))  # what docs/sandbox.png shows
    page.select_option("#user", label="Dev")
    page.click('.msg [data-action^="approve:"]')
    page.click("#confirm button.primary")
    expect(timeline).to_contain_text("\u2705 Approved by @Carol, @Dev")
    expect(approvals.locator(".status-approved")).to_have_count(1)
    expect(page.locator('.msg [data-action^="approve:"]')).to_have_count(0)
    page.select_option("#user", "U0CAROL")

    # Reject another, with a reason given in the modal (empty first: an inline error).
    page.click("#enqueue")
    page.click('.msg [data-action^="reject:"]')
    page.wait_for_selector("#view textarea")
    page.click("#view button.primary")
    expect(page.locator("#view .error")).to_have_text("Give a reason.")
    page.fill("#view textarea", "Beneficiary not verified")
    page.click("#view button.primary")
    expect(timeline).to_contain_text("Reason:")  # and the reason quoted, on its own line
    quoted = timeline.locator("blockquote").filter(has_text="Beneficiary not verified")
    expect(quoted.first).to_be_visible()
    expect(approvals.locator(".status-rejected")).to_have_count(1)

    # /approvals in the message box lists the decided ones for the acting user.
    page.fill("#command", "/approvals approved payments")
    page.press("#command", "Enter")
    expect(page.locator(".msg.ephemeral")).to_contain_text("Approved approvals in payments")

    # Every Block Kit object became DOM, never the text of a JavaScript object.
    expect(page.locator("body")).not_to_contain_text("[object")
    expect(page.locator(".fields").first).to_contain_text("Beneficiary name")
    expect(page.locator(".fields").nth(1)).to_contain_text("Queue")


def test_a_non_approver_is_refused_and_the_clock_brings_reminders(page):
    expect = playwright.expect
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0VISITOR")
    page.click("#enqueue")  # the default payload goes to the payments queue
    page.click('[data-channel="C0FINANCE"]')
    page.click('.msg [data-action^="approve:"]')
    page.click("#confirm button.primary")
    expect(page.locator(".msg.ephemeral")).to_contain_text("You are not an approver")
    expect(page.locator("#approvals .status-pending")).to_have_count(1)

    page.click("#ff")  # an hour later the sample policy reminds in the thread
    expect(page.locator(".thread")).to_contain_text("waiting", timeout=15_000)
    # Mentions show names, as Slack does: the approver by name, the group by its handle.
    expect(page.locator(".thread")).to_contain_text("@Carol @finance: Pay 120 EUR")

    # Decided from the CLI: Rotor's decision event brings it to Slack at once (the sandbox's
    # sync runs once a minute, so only the event can show it this soon).
    page.click("#approvals button:text('CLI approve')")
    expect(page.locator("#approvals .status-approved")).to_have_count(1)
    started = time.monotonic()
    expect(page.locator("#timeline")).to_contain_text("Approved outside Slack", timeout=10_000)
    assert time.monotonic() - started < 30
    print(f"CLI decision shown in Slack after {time.monotonic() - started:.1f} s")

    # What `rotor.webhooks.test()` sends, from a button; the Free plan's rate limit is shown.
    page.click("#webhook-test")
    expect(page.locator("#webhook-test-result")).to_have_text(
        "Service answered 200: verified (see its log)"
    )
    expect(page.locator("#rate")).to_contain_text("of 60 API requests in the last minute")


def test_a_payment_over_100k_needs_the_cfo_and_the_amount_typed(page):
    expect = playwright.expect
    timeline = page.locator("#timeline")
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0CAROL")
    enqueue(page, "Payment over 100k")
    page.click('[data-channel="C0FINANCE"]')
    expect(timeline).to_contain_text("Rule: payment over 100k: 2 approvals from @CFO @finance")
    # Carol approves payments, but not over the threshold: the rule names others.
    page.click('.msg [data-action^="approve:"]')
    expect(page.locator(".msg.ephemeral")).to_contain_text("not an approver")
    # The CFO's Approve opens a form: the amount, typed, not a one-tap dialog.
    page.select_option("#user", label="CFO")
    page.click('.msg [data-action^="approve:"]')
    page.wait_for_selector("#view textarea")
    page.fill("#view textarea", "25,000")
    page.click("#view button.primary")
    expect(page.locator("#view .error")).to_contain_text("not this job's amount")
    page.fill("#view textarea", "250,000.00")
    page.click("#view button.primary")
    expect(timeline).to_contain_text("1 of 2 approvals: @CFO")


def test_an_ai_drafted_email_is_corrected_and_the_corrected_job_approved(page):
    expect = playwright.expect
    timeline = page.locator("#timeline")
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0CAROL")
    enqueue(page, "AI outreach email")
    page.click('[data-channel="C0APPROVALS"]')
    expect(timeline).to_contain_text("Quick question about your Q3 roadmap")
    # Edit: the form holds today's subject and body; the subject is corrected.
    page.click('.msg [data-action^="edit:"]')
    subject = page.locator('#view textarea[data-block="edit-0"]')
    expect(subject).to_have_value("Quick question about your Q3 roadmap")
    subject.fill("A question about your Q3 platform hiring")
    page.click("#view button.primary")
    expect(timeline).to_contain_text("Edited by @Carol from job")
    expect(timeline).to_contain_text("A question about your Q3 platform hiring")
    expect(timeline).to_contain_text("Superseded by job")
    # Someone else approves the corrected job: Carol, its editor, may not.
    page.select_option("#user", "U0VISITOR")
    page.locator('.msg [data-action^="approve:"]').last.click()
    page.click("#confirm button.primary")
    expect(timeline).to_contain_text("Approved by @Visitor")


def test_the_home_tab_decides_links_and_the_clock_expires(page):
    expect = playwright.expect
    timeline = page.locator("#timeline")
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0CAROL")
    enqueue(page, "Large payment")  # requested by the Visitor
    page.wait_for_selector("#approvals .status-pending")
    page.click("#home-entry")  # Slack sends app_home_opened; the app publishes the tab
    expect(page.locator("#channel-title")).to_have_text("Home")
    expect(timeline).to_contain_text("1 approval waits on you")
    expect(timeline).to_contain_text("Pay 48500 EUR to Acme GmbH")
    expect(timeline).to_contain_text("0 of 2 approvals")
    expect(page.locator("#composer")).to_be_hidden()
    page.click('.home [data-action^="approve:"]')
    page.click("#confirm button.primary")
    expect(timeline).to_contain_text("counts; it waits for more approvals")
    expect(timeline).to_contain_text("Nothing waits on you")
    ARTIFACTS.mkdir(exist_ok=True)

    # A member of the finance group sees it with Carol's approval, and jumps to the message.
    page.select_option("#user", label="Dev")
    expect(timeline).to_contain_text("1 of 2 approvals")
    page.screenshot(path=str(ARTIFACTS / "home.png"))
    # An hour on, the tab is the same, but its ages are not frozen.
    expect(timeline).to_contain_text("requested just now")
    page.click("#ff")
    expect(timeline).to_contain_text("requested 1 hour ago")
    page.click('.home [data-action^="open_link:"]')
    expect(page.locator("#channel-title")).to_have_text("# finance")
    expect(timeline).to_contain_text("1 of 2 approvals: @Carol")

    # Nobody else approves: a day later the sample policy's 6 h expiry has rejected it, and
    # the requester reads how it ended in their direct messages.
    page.click("#ff-day")
    expect(timeline).to_contain_text("Expired", timeout=15_000)
    expect(page.locator("#approvals .status-rejected")).to_have_count(1)
    page.select_option("#user", "U0VISITOR")
    page.click('[data-channel="D0VISITOR"]')
    expect(timeline).to_contain_text("Your request, job job_", timeout=10_000)
    expect(timeline).to_contain_text("on payments (the approval)")


def _enqueue(url: str, count: int, queue: str = "outreach") -> None:
    for i in range(count):
        body = {"queue": queue, "payload": f'{{"to": "person{i}@example.com", "body": "Hi"}}'}
        assert httpx.post(url + "/api/enqueue", json=body, trust_env=False).status_code == 200


def _box(page, selector: str) -> dict:
    return page.eval_on_selector(selector, "e => e.getBoundingClientRect().toJSON()")


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 720}])
def test_the_page_fits_the_window_and_keeps_selection_and_scroll(page, sandbox_url):
    expect = playwright.expect
    messages = page.locator("#timeline > .msg")
    _enqueue(sandbox_url, 6)  # more than a 720-pixel window holds, all in #approvals
    expect(messages).to_have_count(6, timeout=20_000)

    # The page never grows past the window: the message list scrolls, and the channel list,
    # the message box and the Rotor panel stay on the screen with the newest message.
    timeline = _box(page, "#timeline")
    assert page.eval_on_selector("#timeline", "e => e.scrollHeight > e.clientHeight + 200")
    assert page.evaluate("document.scrollingElement.scrollHeight") <= 720
    for selector in ("#composer", "#channels", "#enqueue", "#user"):
        box = _box(page, selector)
        assert box["top"] >= 0 and box["bottom"] <= 720, (selector, box)
    # Every "Acting as" label fits its picker (the arrow takes about 24 pixels).
    label, room = page.eval_on_selector(
        "#user",
        """e => { const probe = document.createElement("span");
                  probe.style.font = getComputedStyle(e).font; probe.style.whiteSpace = "pre";
                  e.after(probe);
                  const widths = [...e.options].map((o) => { probe.textContent = o.text;
                                                             return probe.offsetWidth; });
                  probe.remove(); return [Math.max(...widths), e.clientWidth]; }""",
    )
    assert label < room - 24, (label, room)
    newest = _box(page, "#timeline > .msg:last-child")
    assert timeline["top"] <= newest["bottom"] <= timeline["bottom"] + 1, (newest, timeline)

    # Someone scrolls up to the first message and selects its approval id, to copy it ...
    page.eval_on_selector("#timeline", "e => { e.scrollTop = 100; }")
    approval_id = messages.first.locator(".fields code", has_text="apv_")
    chosen = approval_id.evaluate(
        """e => { const r = document.createRange(); r.selectNodeContents(e);
                  getSelection().removeAllRanges(); getSelection().addRange(r);
                  return getSelection().toString(); }""",
    )
    assert chosen.startswith("apv_")
    # ... while a new message arrives and the page refreshes: both stay as they were.
    renders = page.evaluate("window.renders")
    _enqueue(sandbox_url, 1)
    expect(messages).to_have_count(7, timeout=10_000)
    page.wait_for_function(f"window.renders > {renders} + 1")
    assert page.evaluate("getSelection().toString()") == chosen
    assert page.eval_on_selector("#timeline", "e => e.scrollTop") == 100

    # A long rejection reason wraps in the Rotor panel, and in Slack once its event brings it
    # there (nothing scrolls sideways); the CLI buttons keep their width.
    approval = page.get_attribute("#approvals .approval:last-child", "data-approval")
    reason = (
        "The beneficiary's bank details changed last week and nobody has checked them. " * 3
        + "Check reference "
        + "9f3a7c2e5b1d" * 8  # one word wider than the panel
    )
    body = {"id": approval, "status": "rejected", "reason": reason}
    assert httpx.post(sandbox_url + "/api/decide", json=body, trust_env=False).status_code == 200
    expect(page.locator(f'[data-approval="{approval}"] .reason')).to_have_text(reason)
    button = _box(page, "#approvals button")
    assert button["width"] > 60 and button["height"] < 40, button
    expect(messages.filter(has_text=approval)).to_contain_text("Check reference", timeout=10_000)
    for selector in (f'[data-approval="{approval}"] .reason', "aside", "#timeline"):
        assert page.eval_on_selector(selector, "e => e.scrollWidth <= e.clientWidth"), selector


def test_the_page_refuses_other_sites_and_foreign_host_names(sandbox_url):
    port = sandbox_url.rsplit(":", 1)[1]
    enqueue = {"queue": "payments", "payload": '{"amount": 1}'}

    def post(headers: dict) -> httpx.Response:
        return httpx.post(
            sandbox_url + "/api/enqueue", json=enqueue, headers=headers, trust_env=False
        )

    # DNS rebinding: a foreign name that resolves to 127.0.0.1 reaches the port, with its Host.
    rebound = {"host": f"rebind.attacker.example:{port}"}
    assert httpx.get(sandbox_url + "/", headers=rebound, trust_env=False).status_code == 403
    assert (
        httpx.get(sandbox_url + "/api/state", headers=rebound, trust_env=False).status_code == 403
    )
    for headers in (
        rebound,
        {"origin": "https://attacker.example"},
        {"origin": f"http://localhost:{port}"},  # another origin than the page's own
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ):
        response = post(headers)
        assert response.status_code == 403, headers
        assert response.text.startswith("Refused: "), response.text
    # Nothing a refused request asked for was done.
    assert httpx.get(sandbox_url + "/api/state", trust_env=False).json()["approvals"] == []

    # The page's own requests, and tools on this machine, are served.
    own = {"origin": sandbox_url, "sec-fetch-site": "same-origin"}
    assert post(own).status_code == 200
    local = {"host": f"localhost:{port}", "origin": f"http://localhost:{port}"}
    assert post(local).status_code == 200
    assert len(httpx.get(sandbox_url + "/api/state", trust_env=False).json()["approvals"]) == 2


def test_people_links_unread_channels_time_order_and_a_stopped_sandbox(page, sandbox_process):
    expect = playwright.expect
    timeline = page.locator("#timeline")
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.reload()  # every request of a load answered: no /favicon.ico 404
    page.wait_for_selector("#user option", state="attached")

    # Switching who is acting while reading direct-messages shows the new person's DMs.
    page.select_option("#user", "U0CAROL")
    page.click('#channels [data-channel="D0CAROL"]')
    page.select_option("#user", "U0VISITOR")
    expect(page.locator('#channels [data-channel="D0VISITOR"]')).to_have_class("channel active")
    renders = page.evaluate("window.renders")
    page.wait_for_function(f"window.renders > {renders} + 2")  # the page goes on refreshing
    expect(page.locator("#banner")).to_be_hidden()

    # A job that lands in another channel marks it unread, as Slack does.
    page.click('#channels [data-channel="C0APPROVALS"]')
    enqueue(page, "Large payment")
    expect(page.locator('#channels [data-channel="C0FINANCE"]')).to_have_class("channel unread")
    page.click('#channels [data-channel="C0FINANCE"]')
    expect(page.locator('#channels [data-channel="C0FINANCE"]')).to_have_class("channel active")

    # A reply only you see stays where it was said: later messages come after it.
    page.fill("#command", "/approvals")
    page.press("#command", "Enter")
    expect(page.locator(".msg.ephemeral")).to_have_count(1)
    page.click("#enqueue")
    expect(timeline.locator(".msg:not(.ephemeral)")).to_have_count(2)
    assert page.eval_on_selector_all(
        "#timeline > .msg", "ms => ms.map(m => m.classList.contains('ephemeral'))"
    ) == [False, True, False]

    # The requester's DM links its message: the link opens it here, highlighted.
    first = page.get_attribute("#approvals .approval:last-child", "data-approval")
    body = {"id": first, "status": "rejected", "reason": "Not this quarter"}
    url = sandbox_process[0]
    assert httpx.post(url + "/api/decide", json=body, trust_env=False).status_code == 200
    page.click('#channels [data-channel="D0VISITOR"]')
    link = page.locator("#timeline a", has_text="the approval")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    link.click()
    expect(page.locator("#channel-title")).to_have_text("# finance")
    expect(page.locator(".msg.highlight")).to_contain_text("Pay 48500 EUR")
    # Opened from elsewhere, the local Slack's permalink leads to the page, the same way.
    moved = httpx.get(href, trust_env=False)
    assert moved.status_code == 302 and moved.headers["location"].startswith(url + "/#/archives/")
    page.goto(moved.headers["location"])
    expect(page.locator(".msg.highlight")).to_contain_text("Pay 48500 EUR")
    assert missing == []

    # Ctrl-C: the page says the sandbox stopped instead of looking alive.
    sandbox_process[1].send_signal(signal.SIGINT)
    expect(page.locator("#banner")).to_contain_text("The sandbox has stopped")


def test_a_guest_in_no_channel_is_told_who_decides_a_queue_without_approvers(page):
    expect = playwright.expect
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0GUEST")
    expect(page.locator("#role")).to_contain_text("in no channel: decides nothing")
    enqueue(page, "AI outreach email")  # a queue with no approvers
    page.click('#channels [data-channel="C0APPROVALS"]')
    page.click('.msg [data-action^="approve:"]')
    if page.locator("#confirm").count():
        page.click("#confirm button.primary")
    expect(page.locator(".msg.ephemeral")).to_contain_text(
        "Who can decide: the members of #approvals"
    )
    expect(page.locator("#approvals .status-pending")).to_have_count(1)
