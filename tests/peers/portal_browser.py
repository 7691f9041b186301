"""The portal in a real browser: headless Chromium (Debian's, driven by Playwright).

Opens a portal page without a session, signs in at Kopa's login form and must land back
on that page; then, as a front-office specialist, creates a case from the catalogue with
a new client, takes it through its states, finds it by a search without diacritics, sees
it counted in the report, and switches the language. axe-core (from npm) checks every
main page. Prints one JSON object with what happened; screenshots go to --screenshots.
"""

import argparse
import json
import os
import re
import sys

from browser import launch_chromium

# axe's tags for WCAG 2.0 and 2.1, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe(page, axe_js):
    """The page's accessibility violations as axe-core reports them."""
    page.add_script_tag(path=axe_js)
    return page.evaluate(
        """tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})
            .then(r => r.violations.map(v => ({id: v.id, impact: v.impact,
                nodes: v.nodes.length, help: v.help,
                targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))""",
        AXE_TAGS,
    )


def report_count(page, service):
    """Cases of `service` in the report on screen (0 when it has no row)."""
    page.fill("#report-from", "2000-01-01")
    page.fill("#report-to", "2100-01-01")
    page.wait_for_selector("table.report")
    page.wait_for_load_state("networkidle")
    cell = page.locator(f'tr[data-key="{service}"] td.cases')
    return int(cell.inner_text()) if cell.count() else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True, help="Kopa's TLS certificate (PEM)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--service", required=True, help="catalogue code to register")
    p.add_argument("--client-name", required=True)
    p.add_argument("--client-code", required=True)
    p.add_argument("--search", required=True, help="the diacritics-free search")
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
    out = {"axe": {}}
    with sync_playwright() as pw:
        context, page, errors = launch_chromium(pw, args, 1280, 800)
        try:
            # Asked for the reports without a session: the login form, then back there.
            page.goto(f"{base}/reports")
            page.wait_for_selector("#password")
            shot(page, "01-login")
            page.fill("#username", args.username)
            page.fill("#password", args.password)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:has-text('Pārskati')")
            out["landed_on"] = re.sub(r"^https://[^/]+", "", page.url)
            out["report_before"] = report_count(page, args.service)
            out["axe"]["reports"] = axe(page, args.axe)

            page.click("nav >> text=Lietas")
            page.wait_for_selector("h1:has-text('Lietas')")
            page.wait_for_load_state("networkidle")
            shot(page, "02-cases")
            out["axe"]["cases"] = axe(page, args.axe)

            page.click("#new-case")
            page.wait_for_selector(f"#service option[value='{args.service}']", state="attached")
            page.select_option("#service", args.service)
            page.select_option("#channel", "in_person")
            page.fill("#client-name", args.client_name)
            page.fill("#client-code", args.client_code)
            out["axe"]["new_case"] = axe(page, args.axe)
            shot(page, "03-new-case")
            page.click("#register")
            page.wait_for_url(re.compile(r".*/cases/\d+$"))
            out["case_id"] = int(page.url.rsplit("/", 1)[1])
            page.wait_for_selector("#case-state[data-state='registered']")
            out["axe"]["case"] = axe(page, args.axe)
            states = []
            for to in ["in_progress", "decided", "result_delivered"]:
                page.click(f"button.move[data-to='{to}']")
                page.wait_for_selector(f"#case-state[data-state='{to}']")
                states.append(to)
            out["states"] = states
            # A document attached through the file picker.
            doc = os.path.join(args.profile, "izziņa.pdf")
            with open(doc, "wb") as f:
                f.write(b"%PDF-1.4\n% Kopa browser test\n%%EOF\n")
            page.set_input_files("#attachment", doc)
            page.click("form:has(#attachment) button[type=submit]")
            page.wait_for_selector("ul.attachments li")
            out["attachments"] = page.locator("ul.attachments li a").all_inner_texts()
            out["history"] = page.locator("ol.history li").count()
            shot(page, "04-case-delivered")

            page.click("nav >> text=Lietas")
            page.click("button.tab:has-text('Visas')")
            page.fill("#case-search", args.search)
            page.press("#case-search", "Enter")
            row = page.locator(f"table.cases a:text-is('#{out['case_id']}')")
            row.wait_for()
            out["search_found"] = row.count() == 1
            shot(page, "05-search")
            # Saved as a filter, and brought back after looking elsewhere.
            page.fill("#filter-name", "Ķeniņa lietas")
            page.click("form:has(#filter-name) button[type=submit]")
            saved = page.locator("button.saved-filter:text-is('Ķeniņa lietas')")
            saved.wait_for()
            page.click("button.tab:has-text('Centra rinda')")
            page.wait_for_load_state("networkidle")
            saved.click()
            row.wait_for()
            out["saved_filter_found"] = page.input_value("#case-search") == args.search

            page.click("nav >> text=Klienti")
            page.wait_for_selector("#client-search")
            out["axe"]["clients"] = axe(page, args.axe)

            page.click("nav >> text=Pārskati")
            page.wait_for_selector("h1:has-text('Pārskati')")
            out["report_after"] = report_count(page, args.service)
            out["chart_bars"] = page.locator("svg.chart rect.bar").count()
            shot(page, "06-report")

            page.click("#lang-switch")
            page.wait_for_selector("h1:has-text('Reports')")
            out["lang"] = page.evaluate("document.documentElement.lang")
            out["nav"] = page.locator("nav").inner_text()
            # The choice holds on the next load.
            page.reload()
            page.wait_for_selector("h1:has-text('Reports')")
            out["lang_after_reload"] = page.evaluate("document.documentElement.lang")
            shot(page, "07-english")
            # A tablet.
            page.set_viewport_size({"width": 768, "height": 1024})
            page.click("nav >> text=Cases")
            page.wait_for_selector("h1:has-text('Cases')")
            out["tablet_overflow"] = page.evaluate(
                "document.documentElement.scrollWidth > window.innerWidth + 1"
            )
            shot(page, "08-tablet")
        except Exception as e:  # a step did not happen: say which, with a picture
            shot(page, "99-failed")
            out["failed"] = f"{type(e).__name__}: {e}"
        out["page_errors"] = errors
        context.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
