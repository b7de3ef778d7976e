#!/usr/bin/env python3
"""The console in a real browser over a big history: page weight, History's first render and search time.

The store is filled by scripts/bench_history.py's generator (N records, zh and en, a year of timestamps); the
daemon serves it with `[http] enabled` on loopback; headless Chromium (Debian's) loads `/#/history`:

- page weight: every shipped asset gzipped as served (the sum), and what the browser fetched for History
  (transfer sizes, headers included) on a cold cache;
- first render: navigation start -> the first page of records in the DOM (`asrboxPerf.historyRenderedAt`),
  on a cold cache (first load) and warm (later loads: the assets come from the year-long cache);
- search: submit -> results in the DOM (`asrboxPerf.historySearch`), for the same zh and en words as
  bench_history.py, against the same query through the CLI (`asrbox history search`, a process per query, and
  its query alone in this process) in the same run.

    .venv/bin/python scripts/bench_console.py [--records 100000] [--runs 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_history import QUERIES, bench_cli, fill, serving  # noqa: E402
from benchlib import emit_json, summary_ms  # noqa: E402

from daemon.http.console import ROOT as ASSETS  # noqa: E402
from daemon.http.console import _asset  # noqa: E402


def page_weight() -> dict[str, int]:
    raw = packed = 0
    for p in sorted(ASSETS.rglob("*")):
        if p.is_file():
            got = _asset(p.relative_to(ASSETS).as_posix())
            assert got is not None
            raw += len(got[0])
            packed += len(got[1] if got[1] is not None else got[0])
    return {"raw_bytes": raw, "gzip_bytes": packed}


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-background-networking", "--proxy-server=http://127.0.0.1:9", "--lang=en-US"):  # fmt: skip
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def wait(drv: Any, script: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = drv.execute_script(script)
        if got:
            return got
        time.sleep(0.02)
    raise SystemExit(f"timed out: {script}")


def load_history(drv: Any, base: str) -> float:
    drv.get("about:blank")
    drv.get(base + "/#/history")
    return float(wait(drv, "return window.asrboxPerf && window.asrboxPerf.historyRenderedAt"))


def search(drv: Any, word: str) -> tuple[float, int]:
    before = int(drv.execute_script("return Number(document.getElementById('page-history').dataset.searched||0)"))
    q = drv.find_element("id", "hist-q")
    q.clear()
    q.send_keys(word + "\n")
    wait(drv, f"return Number(document.getElementById('page-history').dataset.searched||0) > {before}")
    ms = float(drv.execute_script("return window.asrboxPerf.historySearch"))
    return ms, int(drv.execute_script("return document.querySelectorAll('#hist-list li.rec').length"))


def bench_browser(base: str, runs: int) -> dict[str, Any]:
    drv = browser()
    try:
        cold = load_history(drv, base)
        fetched = drv.execute_script(
            "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
            ".reduce((s, e) => s + (e.transferSize || 0), 0)"
        )
        warm, api_render = [], []
        for _ in range(runs):
            warm.append(load_history(drv, base))
            api_render.append(float(drv.execute_script("return window.asrboxPerf.historyFirstRender")))
        out: dict[str, Any] = {"first_render_cold_ms": round(cold, 1), "first_render_warm": summary_ms(warm)}
        out["first_page_request_and_render"] = summary_ms(api_render)  # the records call + DOM, within the above
        out["history_transfer_bytes_cold"] = int(fetched)
        for lang, word in QUERIES.items():
            search(drv, word)  # warm-up
            samples, shown = [], 0
            for _ in range(runs):
                ms, shown = search(drv, word)
                samples.append(ms)
            out[f"search_{lang}"] = {**summary_ms(samples), "shown": shown}
        return out
    finally:
        drv.quit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        work = Path(tmp)
        root = work / "store"
        fill(root, args.records)
        with serving(work, root) as (port, env):
            page = bench_browser(f"http://127.0.0.1:{port}", args.runs)
        cli = bench_cli(env, root, args.runs)
    result = {"records": args.records, "cpus": os.cpu_count(), "weight": page_weight(), "browser": page, "cli": cli}
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
