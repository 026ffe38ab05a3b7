#!/usr/bin/env python3
"""The live dashboard in a real headless Chromium (Debian's chromium,
chromium-driver, python3-selenium): a controller with bearer tokens, one
combiner and two `rondo client`s run a 3-round session with validation
while the page, opened at /#token=<admin JWT>, polls the REST routes.

Checks: the token leaves the address bar (kept in sessionStorage); the page
updates live (it shows the session with fewer than 3 rounds, then 3); the
rounds table ends with 3 finished rows whose accepted counts are 2; the
accuracy plot has 3 points whose means are the validators' figures
(2.5, 5, 7.5: the cluster package reports the model's mean); the combiner,
its 2 clients and the 4 models of the trail are listed. Saves a screenshot
to the work directory (and to --screenshot when given).

Exit 0 on success, 1 on a failed check (with the logs' tails), 77 when
chromium, chromedriver or selenium is not installed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from federation import check, http_get, run_case  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1400,1900"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    d.set_script_timeout(30)
    return d


def page_state(d):
    return d.execute_script("""
      const q = (s) => Array.from(document.querySelectorAll(s));
      return {
        sessions: q('#sessions-table tbody tr').map(
          (r) => r.getAttribute('data-session-id')),
        rounds: q('#rounds-table tbody tr[data-round-id]').map((r) => ({
          id: r.getAttribute('data-round-id'),
          status: r.getAttribute('data-status'),
          accepted: r.children[4].textContent})),
        points: q('#accuracy-plot circle.point').map((c) => ({
          id: c.getAttribute('data-round-id'),
          mean: Number(c.getAttribute('data-mean'))})),
        loss_points: q('#loss-plot circle.point').length,
        combiners: q('#combiners-table tbody tr').map(
          (r) => r.getAttribute('data-combiner')),
        clients: q('#clients-table tbody tr').map(
          (r) => r.getAttribute('data-combiner')),
        models: q('#models-table tbody tr').length,
        problems: document.getElementById('problems').textContent,
        href: location.href,
        stored: sessionStorage.getItem('rondo.token') || ''};
    """)


def run(f, shot):
    seed = f.seed()
    status, body = http_get(f.api + "/")
    check(status == 200 and "dashboard.js" in body,
          "GET / serves the dashboard from the binary")
    check(http_get(f.api + "/dashboard/dashboard.js")[0] == 200,
          "GET /dashboard/dashboard.js is served")
    settings = json.dumps({"sleepers": ["c1"], "sleep": 2})
    session = subprocess.Popen(
        [f.rondo, "session", "start", "--controller", f.api, "--token", f.admin,
         "--session-id", "dash", "--rounds", "3", "--clients-required", "2",
         "--round-timeout", "60", "--validate", "true", "--model-id", seed,
         "--client-settings", settings, "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    d = browser()
    try:
        d.get(f.api + "/#token=" + f.admin)
        seen_counts = set()
        state = None
        deadline = time.monotonic() + 180
        settled = None  # when the session's command returned
        while time.monotonic() < deadline:
            if settled is None and session.poll() is not None:
                settled = time.monotonic()
            # The page polls every 2 s: 10 s after the session ended it
            # shows all there is.
            if settled is not None and time.monotonic() > settled + 10:
                break
            state = page_state(d)
            if "dash" in state["sessions"]:
                seen_counts.add(len(state["rounds"]))
            if (len(state["rounds"]) == 3 and len(state["points"]) == 3
                    and all(r["status"] == "Finished"
                            for r in state["rounds"])
                    and state["models"] == 4):
                break
            time.sleep(0.2)
        text, _ = session.communicate(timeout=120)
        check(session.returncode == 0, "session 'dash' finished:\n" + text)
        print("page:", json.dumps(state), flush=True)
        check("token" not in state["href"],
              "the token left the address bar (%s)" % state["href"])
        check(state["stored"] == f.admin, "the token is in sessionStorage")
        check(state["problems"] == "", "the page lists no problems (%s)"
              % state["problems"])
        check(min(seen_counts) < 3,
              "the page updated live (it showed %s rounds)"
              % sorted(seen_counts))
        check([r["id"] for r in state["rounds"]] == ["1", "2", "3"],
              "the rounds table has 3 rows")
        check(all(r["status"] == "Finished" and r["accepted"] == "2"
                  for r in state["rounds"]),
              "each round finished with 2 accepted updates")
        means = [p["mean"] for p in state["points"]]
        check(len(means) == 3 and all(abs(m - e) < 1e-4 for m, e in
                                      zip(means, [2.5, 5.0, 7.5])),
              "the accuracy plot has 3 points with means %s" % means)
        check(state["loss_points"] == 3, "the loss plot has 3 points")
        check(state["combiners"] == ["combiner-a"],
              "the combiner is listed")
        check(state["clients"] == ["combiner-a", "combiner-a"],
              "its 2 clients are listed under it")
        check(state["models"] == 4, "the model trail lists 4 models")
        d.save_screenshot(shot)
        check(os.path.getsize(shot) > 10000, "screenshot saved to " + shot)
    finally:
        d.quit()
        if session.poll() is None:
            session.kill()
            session.wait(timeout=15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True, choices=["three_rounds"])
    ap.add_argument("--screenshot", help="also copy the screenshot here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("skipped: python3-selenium is not installed")
        return 77
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.access(exe, os.X_OK):
            print("skipped: %s is not installed" % exe)
            return 77

    def body(f, work):
        f.start(via_api=True)
        shot = os.path.join(work, "dashboard.png")
        run(f, shot)
        if args.screenshot:
            shutil.copyfile(shot, args.screenshot)

    return run_case("rondo-dashboard-", body, args.keep)


if __name__ == "__main__":
    sys.exit(main())
