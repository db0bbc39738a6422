"""`rotor-slack sandbox` in real headless Chromium: enqueue, approve, reject, list."""

from __future__ import annotations

import os
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
def sandbox_url(tmp_path):
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
    yield url
    process.terminate()
    process.wait(15)


@pytest.fixture
def page(sandbox_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(10_000)
        page.goto(sandbox_url)
        yield page
        browser.close()


def test_enqueue_approve_reject_and_list_in_the_browser(page):
    expect = playwright.expect
    timeline, approvals = page.locator("#timeline"), page.locator("#approvals")
    page.wait_for_selector("#user option", state="attached")
    page.select_option("#user", "U0CAROL")

    # Enqueue a large payment from the Rotor panel; its message appears in #finance.
    page.get_by_role("button", name="Large payment").click()
    page.click("#enqueue")
    page.click('[data-channel="C0FINANCE"]')
    expect(timeline).to_contain_text("Approval needed: payments")
    expect(timeline).to_contain_text("Acme GmbH")
    expect(timeline).not_to_contain_text("sk_live_should_be_masked")
    expect(approvals).to_contain_text("pending")

    # Approve, through the confirm dialog: the message changes, Rotor says approved.
    page.click('.msg [data-action^="approve:"]')
    page.click("#confirm button.primary")
    expect(timeline).to_contain_text("\u2705 Approved by @U0CAROL")
    expect(approvals.locator(".status-approved")).to_have_count(1)
    expect(page.locator('.msg [data-action^="approve:"]')).to_have_count(0)

    # Reject another, with a reason given in the modal (empty first: an inline error).
    page.click("#enqueue")
    page.click('.msg [data-action^="reject:"]')
    page.wait_for_selector("#view textarea")
    page.click("#view button.primary")
    expect(page.locator("#view .error")).to_have_text("Give a reason.")
    page.fill("#view textarea", "Beneficiary not verified")
    page.click("#view button.primary")
    expect(timeline).to_contain_text("Reason: Beneficiary not verified")
    expect(approvals.locator(".status-rejected")).to_have_count(1)

    # /approvals in the message box lists the decided ones for the acting user.
    page.fill("#command", "/approvals approved payments")
    page.press("#command", "Enter")
    expect(page.locator(".msg.ephemeral")).to_contain_text("Approved approvals in payments")

    # Every Block Kit object became DOM, never the text of a JavaScript object.
    expect(page.locator("body")).not_to_contain_text("[object")
    expect(page.locator(".fields").first).to_contain_text("Queue")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sandbox.png"))


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
