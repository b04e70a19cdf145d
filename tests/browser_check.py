"""Debian's chromium, headless, driven by Playwright: /dashboard and /docs.

    python browser_check.py <base url> <screenshot.png>

The dashboard must load without console errors, show the numbers
`GET /stats` reports at the same moment, and refresh on its own; /docs must
render Swagger UI with every operation of /openapi.json. Prints what it
compared; an assertion that fails exits non-zero with the reason.
"""

import sys

from playwright.sync_api import sync_playwright

base, screenshot = sys.argv[1:3]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def dig(obj, path):
    for key in path.split("."):
        obj = obj[key]
    return obj


def shown(value, how):
    """The dashboard's formatting of a number."""
    if how == "pct":
        return f"{100 * value:.1f} %"
    return f"{round(value):,}"


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    page.goto(f"{base}/dashboard")
    page.wait_for_selector("body[data-loaded=true]", timeout=15_000)
    # A second refresh (every 2 s) fills in the rates.
    page.wait_for_function("document.getElementById('rate').textContent !== '–'", timeout=15_000)
    stats = page.request.get(f"{base}/stats").json()
    page.wait_for_timeout(2500)  # the page's next refresh reads the same numbers
    compared = 0
    # Read in one go, so that a refresh cannot land halfway through.
    figures = page.evaluate(
        "() => [...document.querySelectorAll('[data-k]')].map(e => [e.dataset.k, e.dataset.f || null, e.innerText])"
    )
    for key, how, text in figures:
        if key.startswith("lag."):
            _, lane, partition = key.split(".")
            want = next(
                p["lag"] for p in stats["kafka"]["partitions"] if p["lane"] == lane and str(p["partition"]) == partition
            )
        else:
            want = dig(stats, key)
        assert text == shown(want, how), f"{key}: the page shows {text!r}, /stats says {want!r}"
        compared += 1
    # Redis's memory moves between two reads: shown, in MiB, with its limit.
    assert page.inner_text("#redis-used").endswith(" MiB"), page.inner_text("#redis-used")
    assert page.inner_text("#redis-max") == (f"{stats['redis']['maxmemory'] / 1048576:.1f} MiB" if stats["redis"]["maxmemory"] else "none")
    rows = page.query_selector_all("#latest tr")
    assert len(rows) == len(stats["latest"]), (len(rows), len(stats["latest"]))
    assert stats["latest"], "no finished tasks to show"
    first = rows[0].query_selector_all("td")
    assert first[1].get_attribute("title") == stats["latest"][0]["task_id"]
    assert first[3].inner_text() == stats["latest"][0]["status"]
    assert len(page.query_selector_all("#partitions tr")) == len(stats["kafka"]["partitions"]) > 0
    # Every member, in /stats's order, with its state (or "stale").
    members = page.evaluate(
        "() => [...document.querySelectorAll('#members tr')].map(r => [r.cells[0].innerText, r.cells[1].innerText, r.cells[3].innerText])"
    )
    everyone = stats["members"]["bridges"] + stats["members"]["apps"]
    want = [[m["kind"], m["id"], "stale" if m["stale"] else m["state"]] for m in everyone]
    assert members == want, f"the page shows members {members}, /stats says {want}"
    assert {m[0] for m in members} == {"bridge", "app"}, members
    assert "live" in page.inner_text("#updated")
    page.screenshot(path=screenshot, full_page=True)

    spec = page.request.get(f"{base}/openapi.json").json()
    operations = sum(len(ops) for ops in spec["paths"].values())
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    blocks = len(page.query_selector_all(".opblock"))
    assert blocks == operations, f"/docs shows {blocks} operations, /openapi.json has {operations}"
    assert "AI-EventStream" in page.inner_text(".info .title")
    browser.close()

assert not problems, problems
print(f"browser: ok ({compared} numbers compared, {len(rows)} tasks, {len(members)} members, {blocks} operations in /docs)")
