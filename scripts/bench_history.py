#!/usr/bin/env python3
"""History at scale: the HTTP API's first page and search over N synthetic records (Chinese and English),
against the same queries through the CLI (`asrbox history list/search`) in the same run.

A store is filled with N records (live utterances in sessions and file transcripts, a year of timestamps, zh and
en sentences drawn from a Zipf-weighted vocabulary, full-text indexed as the daemon indexes them). The daemon
runs on it with `[http] enabled` (a silent WAV as its microphone, no broker needed), and each query is timed
client-side over one keep-alive connection: `--runs` times after one warm-up; the first (cold) call is
reported too, and the same query on a new connection each time. The CLI is timed as a user runs it (a new
process, wall time) and its query alone (the same `Store.query` in this process).

    .venv/bin/python scripts/bench_history.py [--records 100000] [--runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchlib import clean_env, emit_json, free_port, http_ok, quiet_wav, start_daemon, summary_ms, wait_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.store.db import Store, fts_query, index_text, iso  # noqa: E402

ZH_VOCAB = (
    "我们 今天 会议 讨论 预算 项目 学生 老师 课程 同学 时间 问题 已经 因为 所以 但是 可以 需要 如果 这个 那个 "
    "公司 市场 客户 产品 数据 系统 设计 开发 测试 计划 安排 下周 明天 上午 下午 报告 结果 进度 目标 团队 经理 "
    "北京 上海 广州 深圳 合同 价格 质量 服务 培训 资料 文件 邮件 电话 地址 银行 医院 学校 图书馆 教室 作业 "
    "考试 成绩 语文 数学 英语 历史 地理 物理 化学 音乐 体育 美术 朗读 练习 发音 声调 句子 词语 故事 天气 "
    "下雨 晴天 早餐 午饭 晚饭 周末 假期 旅行 火车 飞机 地铁 公交 出租车 停车 交通 安全 健康 运动 休息"
)
EN_VOCAB = (
    "the we today meeting discuss budget project student teacher course class time question already because so "
    "but can need if this that company market customer product data system design develop test plan schedule "
    "next week tomorrow morning afternoon report result progress goal team manager contract price quality "
    "service training document email phone address bank hospital school library classroom homework exam "
    "grade reading writing math history geography physics chemistry music sport art practice pronunciation "
    "sentence word story weather rain sunny breakfast lunch dinner weekend holiday travel train plane subway "
    "bus taxi parking traffic safety health exercise rest agree decide review update deadline invoice order"
)
ZH_WORDS, EN_WORDS = ZH_VOCAB.split(), EN_VOCAB.split()
QUERIES = {"zh": "预算", "en": "budget"}  # mid-frequency words (the counts are printed)
PAGE = 50


def zipf_pick(rng: random.Random, words: list[str], n: int) -> list[str]:
    weights = [1.0 / (i + 1) for i in range(len(words))]
    return rng.choices(words, weights=weights, k=n)


def sentence(rng: random.Random, language: str) -> str:
    if language == "zh":
        return "".join(zipf_pick(rng, ZH_WORDS, rng.randint(5, 14))) + "。"
    words = zipf_pick(rng, EN_WORDS, rng.randint(6, 18))
    return " ".join(words).capitalize() + "."


def fill(root: Path, n: int, seed: int = 7) -> None:
    """N records over the last year, oldest first (as the daemon writes them), with their FTS rows."""
    rng = random.Random(seed)
    store = Store(root)
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / n
    session, left = None, 0
    with store._tx() as db:
        for i in range(n):
            when = start + step * i
            live = rng.random() < 0.7
            if live and left <= 0:
                session, left = str(uuid.uuid4()), rng.randint(10, 80)
                db.execute("INSERT INTO sessions (id, name, started_at) VALUES (?, ?, ?)", (session, None, iso(when)))
            left -= 1
            language = "zh" if rng.random() < 0.5 else "en"
            parts = [sentence(rng, language) for _ in range(rng.randint(1, 3))]
            text = ("" if language == "zh" else " ").join(parts)
            segments = [{"start": 3.0 * k, "end": 3.0 * k + 2.8, "text": p} for k, p in enumerate(parts)]
            source = None if live else f"/srv/recordings/day{i // 40:05d}/clip{i:06d}.wav"
            cur = db.execute(
                "INSERT INTO records (id, kind, status, source, session_id, created_at, started_at, ended_at, "
                "duration_s, language, raw_text, text, segments, engine, processing_s) "
                "VALUES (?, ?, 'done', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', 0.1)",
                (
                    str(uuid.uuid4()),
                    "live" if live else "file",
                    source,
                    session if live else None,
                    iso(when),
                    iso(when) if live else None,
                    iso(when + timedelta(seconds=3 * len(parts))) if live else None,
                    3.0 * len(parts),
                    language,
                    text,
                    text,
                    json.dumps(segments, ensure_ascii=False),
                ),
            )
            body = text if live else f"{text} {Path(source or '').name}"
            db.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (cur.lastrowid, index_text(body)))
    store._write("ANALYZE")
    store.close()


@contextmanager
def serving(work: Path, root: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The daemon on the store at `root` with its HTTP face (a silent WAV as its microphone, no broker): its
    port and environment (for the CLI on the same store), while the block runs."""
    port = free_port()
    env = clean_env(
        keep_cache=True,
        ASRBOX_STORE__PATH=str(root),
        ASRBOX_HTTP__ENABLED="true",
        ASRBOX_HTTP__PORT=str(port),
        ASRBOX_MQTT__PORT=str(free_port()),  # nobody there: the daemon keeps trying, HTTP serves
        ASRBOX_SESSION__LISTEN_ON_START="false",
    )
    log = work / "daemon.log"
    proc = start_daemon(env, log, "--source", str(quiet_wav(work / "silence.wav")))
    try:
        url = f"http://127.0.0.1:{port}/api/sessions?limit=1"
        wait_ready(proc, lambda: http_ok(url), "the daemon's HTTP face", log, timeout=180)
        yield port, env
    finally:
        proc.terminate()
        proc.wait(60)


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    elapsed = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise SystemExit(f"GET {path}: {r.status} {body[:300]!r}")
    return elapsed, json.loads(body)


def bench_api(port: int, runs: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cases = {
        "first_page": f"/api/records?limit={PAGE}",
        "search_zh": "/api/records?" + urlencode({"q": QUERIES["zh"], "limit": PAGE}),
        "search_en": "/api/records?" + urlencode({"q": QUERIES["en"], "limit": PAGE}),
        "filtered_live_zh": f"/api/records?source=live&language=zh&limit={PAGE}",
        "sessions": f"/api/sessions?limit={PAGE}",
    }
    out: dict[str, Any] = {}
    for name, path in cases.items():
        cold, body = timed_get(conn, path)
        samples = [timed_get(conn, path)[0] for _ in range(runs)]
        fresh = []  # a new connection each time: the server's own time, without keep-alive effects
        for _ in range(runs):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            fresh.append(timed_get(c, path)[0])
            c.close()
        out[name] = {"cold_ms": round(cold, 1), **summary_ms(samples), "items": len(body["items"])}
        out[name]["new_connection"] = summary_ms(fresh)
        if body.get("next_cursor"):  # the page after it (keyset)
            nxt = f"{path}&cursor={body['next_cursor']}"
            out[name]["next_page"] = summary_ms([timed_get(conn, nxt)[0] for _ in range(runs)])
    deep = f"/api/records?limit={PAGE}"
    cursor, pages, t = None, 0, time.perf_counter()
    while pages < 200:  # 200 pages deep = 10 000 records back
        _, body = timed_get(conn, deep + (f"&cursor={cursor}" if cursor else ""))
        cursor, pages = body["next_cursor"], pages + 1
    out["page_200_walk_ms_per_page"] = round((time.perf_counter() - t) * 1000 / pages, 1)
    conn.close()
    return out


def bench_cli(env: dict[str, str], root: Path, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cli_cases = {
        "first_page": ["history", "list", "-n", str(PAGE)],
        "search_zh": ["history", "search", QUERIES["zh"], "-n", str(PAGE)],
        "search_en": ["history", "search", QUERIES["en"], "-n", str(PAGE)],
    }
    for name, args in cli_cases.items():
        samples = []
        for _ in range(max(3, runs // 4)):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "daemon", *args], env=env, cwd=ROOT, capture_output=True)
            samples.append((time.perf_counter() - t) * 1000)
            if r.returncode != 0:
                raise SystemExit(f"asrbox {' '.join(args)}: {r.stderr.decode()[-500:]}")
        out[name] = {"process": summary_ms(samples)}
    store = Store(root)  # the CLI's own query, without the process start
    try:
        queries = {
            "first_page": lambda: store.query(limit=PAGE),
            "search_zh": lambda: store.query(search=QUERIES["zh"], limit=PAGE),
            "search_en": lambda: store.query(search=QUERIES["en"], limit=PAGE),
        }
        for name, fn in queries.items():
            fn()
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t) * 1000)
            out[name]["query"] = summary_ms(samples)
        for lang, word in QUERIES.items():
            row = store._read_one("SELECT COUNT(*) FROM records_fts WHERE records_fts MATCH ?", (fts_query(word),))
            out[f"matches_{lang}"] = int(row[0]) if row else 0
    finally:
        store.close(checkpoint=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        root = work / "store"
        t = time.perf_counter()
        fill(root, args.records)
        fill_s = time.perf_counter() - t
        db_mb = (root / "asrbox.db").stat().st_size / 1e6
        print(f"filled {args.records} records in {fill_s:.1f} s ({db_mb:.0f} MB)", file=sys.stderr)
        with serving(work, root) as (port, env):
            api = bench_api(port, args.runs)
        cli = bench_cli(env, root, args.runs)
    result = {"records": args.records, "db_mb": round(db_mb), "cpus": os.cpu_count(), "api": api, "cli": cli}
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
