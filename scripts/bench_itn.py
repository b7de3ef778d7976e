"""ITN before/after the runtime change: this tree (kaldifst + shipped grammars) against an earlier commit's
daemon/text/itn.py on WeTextProcessing/pynini (x86_64 only), in child processes (pynini and kaldifst must not
share one), alternating, same machine, same run. Prints a markdown table.

    .venv/bin/python scripts/bench_itn.py --against 405558d --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, statistics, sys, time
sys.path[:0] = [sys.argv[2], sys.argv[3] + "/tests", sys.argv[3]]
from test_itn import cases
rows = cases()
t0 = time.perf_counter()
if sys.argv[1] == "before":
    from pathlib import Path
    import itn_before
    n = itn_before.Itn(Path(sys.argv[2]) / "cache")
else:
    from daemon.text.itn import Itn
    n = Itn()
n.normalize("一", "zh"); n.normalize("one two", "en")
load = time.perf_counter() - t0
runs, ok = [], 0
for _ in range(5):
    t = time.perf_counter()
    ok = sum(n.normalize(s, lang) == e for lang, _, s, e in rows)
    runs.append((time.perf_counter() - t) / len(rows) * 1000)
long = "二十三个苹果，" * 280  # 1960 characters: near MAX_CHARS, the longest text ITN takes
t = time.perf_counter()
n.normalize(long, "zh")
long_s = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
med = statistics.median(runs)
print(json.dumps({"load_s": load, "ms": med, "ok": ok, "n": len(rows), "rss_mb": rss, "long_s": long_s}))
"""


def child(which: str, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(work), str(ROOT)], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="405558d", help="commit whose itn.py ran on pynini")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = subprocess.run(
            ["git", "show", f"{args.against}:daemon/text/itn.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        (work / "itn_before.py").write_text(source)
        child("before", work)  # builds the English grammar into the cache once, as a box did on first use
        got: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for which in got:
                got[which].append(child(which, work))
    n = int(got["after"][0]["n"])
    print(f"| runtime | grammar load, s | ms per sentence | right of {n} | 1960-character text, s | peak RSS, MB |")
    print("|---|---|---|---|---|---|")
    for which, label in (("before", f"pynini ({args.against})"), ("after", "kaldifst (this tree)")):
        med = {k: statistics.median(r[k] for r in got[which]) for k in ("load_s", "ms", "ok", "rss_mb", "long_s")}
        print(
            f"| {label} | {med['load_s']:.2f} | {med['ms']:.2f} | {int(med['ok'])} | {med['long_s']:.2f} "
            f"| {med['rss_mb']:.0f} |"
        )
    for key, what in (("ms", "ms per sentence"), ("long_s", "the long text")):
        ratios = [a[key] / b[key] for a, b in zip(got["after"], got["before"], strict=True)]
        print(f"\n{what}, after/before per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
