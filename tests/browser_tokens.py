"""API tokens in the browser test: a trainer makes one through the API with the browser's
session, a script gets in with it, and an admin revokes it in the Admin tab."""

from __future__ import annotations

import json

from playwright.sync_api import Browser, Page, expect

from tests.browser_support import Served, choose, open_tab, screenshot, table_rows


def with_token(browser: Browser, url: str, token: str) -> tuple[int, str]:
    """``GET /api/v1/tokens`` from a browser without cookies, with ``token`` as the bearer:
    the status and the body."""
    anonymous = browser.new_context()
    try:
        answer = anonymous.request.get(
            url + "/api/v1/tokens", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status, answer.text()
    finally:
        anonymous.close()


def new_token(browser: Browser, page: Page, served: Served) -> tuple[int, str]:
    """The trainer makes an API token with their browser session (the studio has no page for
    that: ``POST /api/v1/tokens``). The token is in that answer only: it lets a script in on
    its own, and the list of tokens it gets names the token but never holds it."""
    made = page.request.post(served.url + "/api/v1/tokens", data={"name": "browser script"})
    assert made.status == 201, made.text()
    token = made.json()["token"]
    assert token.startswith("srpo_")
    status, body = with_token(browser, served.url, token)
    assert status == 200, body
    (listed,) = [t for t in json.loads(body) if t["name"] == "browser script"]
    assert (listed["user"], listed["active"]) == ("tess", True)
    assert token not in body
    return listed["id"], token


def revoke_token(browser: Browser, page: Page, served: Served, token_id: int, token: str) -> None:
    """The admin sees the trainer's token in the Admin tab's list (never the token itself)
    and revokes it there: the list marks it inactive, the token dropdown lets go of it and
    the API refuses it."""
    tab = open_tab(page, "Admin")
    (row,) = [r for r in table_rows(tab, "API tokens") if r[0] == str(token_id)]
    assert row[1:3] == ["tess", "browser script"] and row[-1] == "yes"
    assert token not in tab.get_by_role("grid", name="API tokens", exact=True).inner_text()
    choose(tab, "Active token", f"{token_id}: tess · browser script")
    tab.get_by_role("button", name="Revoke token").click()
    expect(tab.get_by_text(f"Token {token_id} revoked.")).to_be_visible()
    tokens = tab.get_by_role("grid", name="API tokens", exact=True)
    expect(tokens.get_by_role("gridcell", name="no", exact=True)).to_have_count(1)
    (row,) = [r for r in table_rows(tab, "API tokens") if r[0] == str(token_id)]
    assert row[-1] == "no"
    # the revoked token leaves the dropdown of active tokens: no longer chosen either
    expect(tab.get_by_role("combobox", name="Active token", exact=True)).to_have_value("")
    assert with_token(browser, served.url, token)[0] == 401
    screenshot(page, "6-admin")
