"""The security officers' dashboards in a real browser: headless Chromium (Debian's,
driven by Playwright).

Asks for /security without a session, signs in at Kopa's login form and must land back
there; finds the brute-force alert the test raised, the failed sign-ins chart and the top
account; acknowledges the alert with a reason; opens a control's evidence; searches the
audit log and downloads its CSV. axe-core (from npm) checks the page. Prints one JSON
object with what happened; screenshots go to --screenshots.
"""

import argparse
import json
import os
import re
import sys

from browser import launch_chromium
from portal_browser import axe


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True, help="Kopa's TLS certificate (PEM)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--target", required=True, help="the account the brute force aimed at")
    p.add_argument("--reason", required=True, help="why the alert is acknowledged")
    p.add_argument("--axe", required=True, help="axe.min.js")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--profile", required=True, help="a fresh profile directory")
    p.add_argument("--screenshots", required=True)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    os.makedirs(args.screenshots, exist_ok=True)
    shot = lambda page, name: page.screenshot(  # noqa: E731
        path=os.path.join(args.screenshots, f"{name}.png"), full_page=True
    )
    base = args.url.rstrip("/")
    out = {}
    with sync_playwright() as pw:
        context, page, errors = launch_chromium(pw, args, 1280, 900)
        try:
            page.goto(f"{base}/security")
            page.wait_for_selector("#password")
            page.fill("#username", args.username)
            page.fill("#password", args.password)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:has-text('Drošības uzraudzība')")
            out["landed_on"] = re.sub(r"^https://[^/]+", "", page.url)
            out["nav_has_security"] = page.locator("nav >> text=Drošība").count() == 1

            row = page.locator("#alerts tr[data-rule='auth-brute-force']")
            row.first.wait_for()
            out["brute_force_rows"] = row.count()
            out["brute_force_text"] = row.first.inner_text()
            page.wait_for_selector("#failed-chart")
            out["chart_bars"] = page.locator("#failed-chart rect.bar[height]:not([height='0'])").count()
            page.wait_for_selector("#top-accounts tbody tr")
            out["top_account"] = page.locator("#top-accounts tbody tr").first.locator("td").first.inner_text()
            page.wait_for_selector("details.control")
            out["controls"] = page.locator("details.control").count()
            shot(page, "01-security")
            page.wait_for_load_state("networkidle")
            out["axe"] = axe(page, args.axe)

            # Acknowledged with a reason.
            row.first.locator("input[type=text]").fill(args.reason)
            row.first.locator("button.ack-button").click()
            page.wait_for_selector(f"#alerts p.ack:has-text('{args.reason}')")
            out["acknowledged"] = True

            # A control's evidence.
            failing = page.locator("details.control.fail").first
            failing.locator("summary").click()
            out["evidence_rows"] = failing.locator("tbody tr").count()

            # The audit log: the target's failures, and the CSV of them.
            page.fill("#audit-user", args.target)
            page.select_option("#audit-outcome", "failure")
            page.click("#audit-search button[type=submit]")
            # The filtered page replaces the unfiltered one: wait until every row is a
            # failure of the target.
            page.wait_for_function(
                """u => {
                    const rows = [...document.querySelectorAll('#audit-records tbody tr')];
                    return rows.length > 0 && rows.every(r =>
                        r.cells[2].innerText === 'failure' && r.cells[4].innerText === u);
                }""",
                arg=args.target,
            )
            page.wait_for_load_state("networkidle")
            out["audit_rows"] = page.locator("#audit-records tbody tr").count()
            href = page.get_attribute("a[download='kopa-audit.csv']", "href")
            csv = page.evaluate("u => fetch(u).then(r => r.text())", href)
            lines = [line for line in csv.splitlines() if line]
            out["csv_header"] = lines[0] if lines else ""
            out["csv_rows"] = len(lines) - 1
            shot(page, "02-audit-search")
        except Exception as e:  # a step did not happen: say which, with a picture
            shot(page, "99-failed")
            out["failed"] = f"{type(e).__name__}: {e}"
        out["page_errors"] = errors
        context.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
