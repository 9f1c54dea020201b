"""The Mail page's linking views in headless Chromium (SPEC §5.11, §5.12, §5.14): the
"Needs linking" count, its list with each conversation's candidates, one click to choose
— back to the list, one fewer — and an organization's timeline, where a message two
colleagues filed is one conversation "also filed by" the other. Screenshots of both
views are saved beside the test's files for a person to look at."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import needs_chromium
from tests.support.linking_world import Tenant, server_on
from tests.support.mail import make_message
from tests.support.server import BccdServer

PAT = "pat@client.test"

pytestmark = [
    pytest.mark.xdist_group("web_browser_linking"),
    needs_chromium,
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    with server_on("sqlite", tmp_path_factory.mktemp("browser-linking")) as server:
        yield server



def test_needs_linking_one_click_choice_and_an_organization_timeline(
        srv: BccdServer, browser, tmp_path: Path) -> None:
    t = Tenant(srv, "browser")
    t.user("bea")
    t.set_user("alice", sharing="shared")
    t.set_user("bea", sharing="shared")
    t.person("Pat", PAT, org="Client Co")
    org_id = t.persons()[PAT]["organization_id"]
    t.item("deal", "Renewal", "Pat")
    t.item("lead", "Upsell", "Pat")
    t.send(t.mail(to=f"Pat <{PAT}>", subject="Pricing question"))
    t.send(t.mail(to=f"Pat <{PAT}>", subject="Contract draft"))
    shared = make_message(frm=f"Pat <{PAT}>", to=f"alice@{t.domain}, bea@{t.domain}",
                          subject="Kick-off", message_id="<kickoff@client.test>")
    t.forward("alice", shared)
    t.forward("bea", shared)

    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{srv.http_url}/mail/login")
        page.click("summary")  # the token form sits below the emailed-link form
        page.fill("#token", t.alice["api_token"])
        page.click("details button[type=submit]")
        page.wait_for_url("**/mail")
        needs = page.locator("#needs-linking")
        assert needs.locator(".count").inner_text() == "4"  # alice's three, bea's one
        needs.click()
        page.wait_for_url("**/mail?link_state=needs_choice")
        rows = page.locator("ul.threads > li")
        assert rows.count() == 4
        page.screenshot(path=str(tmp_path / "needs-linking.png"), full_page=True)

        row = page.locator("ul.threads > li", has_text="Pricing question")
        assert row.locator("button", has_text="Link deal: Renewal").is_visible()
        assert row.locator("button", has_text="Link lead: Upsell").is_visible()
        row.locator("button", has_text="Link deal: Renewal").click()
        page.wait_for_url("**/mail?link_state=needs_choice&done=linked")
        assert page.locator(".notice", has_text="Linked.").is_visible()
        assert page.locator("#needs-linking .count").inner_text() == "3"
        assert page.locator("ul.threads > li", has_text="Pricing question").count() == 0

        page.goto(f"{srv.http_url}/mail")
        linked = page.locator("ul.threads > li", has_text="Pricing question")
        assert linked.locator(".badge.deal", has_text="Renewal").is_visible()
        # an organization's badge opens its timeline: the kick-off once, also filed by bea
        linked.locator(".badge.organization", has_text="Client Co").click()
        page.wait_for_url(f"**/mail?organization={org_id}")
        assert page.locator(".filter-line .badge.organization", has_text="Client Co").is_visible()
        kickoff = page.locator("ul.threads > li", has_text="Kick-off")
        assert kickoff.count() == 1
        assert kickoff.locator(".also").inner_text() == f"also filed by {t.users['bea']['email']}"
        assert page.locator("ul.threads > li").count() == 3
        page.screenshot(path=str(tmp_path / "organization-timeline.png"), full_page=True)
    finally:
        context.close()
    shots = os.environ.get("BCCD_TEST_SCREENSHOTS")
    if shots:  # keep them where a person looks at them
        for f in tmp_path.glob("*.png"):
            (Path(shots) / f.name).write_bytes(f.read_bytes())
