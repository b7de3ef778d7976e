"""Speakers in the history: `asrbox history list|search --speaker S1|NAME` (a subprocess against a real SQLite
store written through the Store and the speakers' store functions), and the Word export's turns (the real
daemon's HTTP face, the .docx opened with python-docx).
"""

from __future__ import annotations

import io
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import asrbox
from http_daemon import HttpDaemon

from daemon.store import speakers as sp
from daemon.store.db import Store

SESSION_START = "2026-03-05T10:00:00.000Z"


@dataclass
class Seeded:
    ids: dict[str, str] = field(default_factory=dict)  # name -> record id
    session: str = "meeting-1"
    other_session: str = "meeting-2"


def _live(store: Store, session: str, second: int, text: str, label: str | None, language: str = "en") -> str:
    """A transcribed live utterance `second` s after 10:00:00, with its label (and an embedding) if any."""
    start, end = f"2026-03-05T10:00:{second:02d}.000Z", f"2026-03-05T10:00:{second + 2:02d}.000Z"
    rid = store.begin_live(
        session_id=session, audio_path=None, started_at=start, ended_at=end, duration_s=2.0, speech_end_ts=0.0
    )
    segments = [{"start": 0.0, "end": 2.0, "text": text}]
    store.finish(rid, language=language, raw_text=text, text=text, segments=segments, engine={}, processing_s=0.1)
    if label is not None:
        sp.set_utterance_speaker(store, rid, label, np.ones(192, dtype=np.float32) / np.sqrt(192))
    return rid


Line = tuple[float, float, str, str | None]  # start, end, text, speaker label (None: no speaker)


def _file(store: Store, name: str, language: str, lines: list[Line]) -> str:
    """A transcribed file record whose segments are `lines`."""
    segments = [{"start": a, "end": b, "text": t} | ({"speaker": who} if who else {}) for a, b, t, who in lines]
    rid = store.begin("file", source=f"/srv/in/{name}")
    sep = "" if language == "zh" else " "
    text = sep.join(s["text"] for s in segments)
    duration = math.ceil(segments[-1]["end"]) + 1.0  # whole seconds: the stamps are exact
    store.finish(
        rid,
        language=language,
        raw_text=text,
        text=text,
        segments=segments,
        engine={},
        processing_s=0.1,
        duration_s=duration,
    )
    return rid


def seed(root: Path) -> Seeded:
    s = Seeded()
    store = Store(root)
    try:
        with store._tx() as db:
            for sid in (s.session, s.other_session):
                db.execute("INSERT INTO sessions (id, name, started_at) VALUES (?, ?, ?)", (sid, sid, SESSION_START))
        s.ids["ship"] = _live(store, s.session, 1, "we should ship on friday", "S1")
        s.ids["green"] = _live(store, s.session, 4, "the build is green", "S1")
        s.ids["disagree"] = _live(store, s.session, 8, "I disagree about friday", "S2")
        s.ids["ok"] = _live(store, s.session, 12, "ok", None)  # too short for an embedding: no label
        s.ids["fine"] = _live(store, s.session, 14, "fine then", "S1")
        s.ids["elsewhere"] = _live(store, s.other_session, 3, "friday in another meeting", "S2")
        s.ids["panel"] = _file(
            store,
            "panel.wav",
            "en",
            [(0.0, 1.0, "hello there.", "S1"), (1.0, 2.0, "how are you?", "S1"), (2.0, 3.5, "general kenobi", "S2")],
        )
        s.ids["plain"] = _file(
            store, "plain.wav", "en", [(0.0, 1.0, "a plain friday record.", None), (1.0, 2.0, "no.", None)]
        )
        s.ids["zh"] = _file(
            store,
            "会议.wav",
            "zh",
            [(0.0, 1.5, "今天讨论预算", "S1"), (1.5, 3.0, "预算已经批准", "S1"), (3.0, 4.0, "好的", "S2")],
        )
        sp.rename(store, "session", s.session, "S2", "Ms Li")  # only in the first meeting
        sp.rename(store, "record", s.ids["panel"], "S2", "Obi-Wan")
        sp.rename(store, "record", s.ids["zh"], "S1", "王经理")
    finally:
        store.close()
    return s


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("history_speakers")


@pytest.fixture(scope="module")
def seeded(workdir: Path) -> Seeded:
    return seed(workdir / "store")


@pytest.fixture()
def cli_env(env: dict[str, str], workdir: Path, seeded: Seeded) -> dict[str, str]:
    return {**env, "ASRBOX_STORE__PATH": str(workdir / "store")}


def history(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return asrbox("history", *args, env=env, timeout=120)


def listed(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The 8-character ids `history list|search` printed, in order."""
    assert r.returncode == 0, r.stderr
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def short(seeded: Seeded, *names: str) -> list[str]:
    return [seeded.ids[n][:8] for n in names]


# ------------------------------------------------------------------------------------------------------ CLI
def test_search_by_label_and_by_name(cli_env: dict[str, str], seeded: Seeded) -> None:
    everything = listed(history(cli_env, "search", "friday"))
    assert everything == short(seeded, "plain", "elsewhere", "disagree", "ship")  # newest first
    # a label: every utterance with it, in any session
    assert listed(history(cli_env, "search", "friday", "--speaker", "S2")) == short(seeded, "elsewhere", "disagree")
    # a name given in a session: only that session's label
    r = history(cli_env, "search", "friday", "--speaker", "Ms Li")
    assert listed(r) == short(seeded, "disagree")
    assert "Ms Li: I disagree about friday" in r.stdout  # shown by its name
    assert listed(history(cli_env, "search", "friday", "--speaker", "S1")) == short(seeded, "ship")
    # a file record: any of its segments' labels, or a name the record gives one; Chinese too
    assert listed(history(cli_env, "search", "kenobi", "--speaker", "Obi-Wan")) == short(seeded, "panel")
    assert listed(history(cli_env, "search", "kenobi", "--speaker", "S1")) == short(seeded, "panel")
    assert listed(history(cli_env, "search", "预算", "--speaker", "王经理")) == short(seeded, "zh")
    assert listed(history(cli_env, "search", "预算", "--speaker", "Obi-Wan")) == []


def test_list_by_speaker_newest_first_with_limit(cli_env: dict[str, str], seeded: Seeded) -> None:
    s1 = short(seeded, "zh", "panel", "fine", "green", "ship")
    assert listed(history(cli_env, "list", "--speaker", "S1")) == s1
    assert listed(history(cli_env, "list", "--speaker", "S1", "-n", "2")) == s1[:2]
    assert listed(history(cli_env, "list", "--speaker", "Obi-Wan")) == short(seeded, "panel")
    assert listed(history(cli_env, "list", "--speaker", "S2")) == short(seeded, "zh", "panel", "elsewhere", "disagree")
    r = history(cli_env, "list", "--speaker", "S1", "--since", "2026-03-05")
    assert listed(r) == s1  # filters combine (the store wrote them today)
    assert listed(history(cli_env, "list", "--speaker", "S1", "--until", "2026-03-05")) == []
    r = history(cli_env, "list", "--speaker", "nobody")
    assert r.returncode == 0 and r.stdout == "" and "no matching records" in r.stderr
    assert len(listed(history(cli_env, "list", "-n", "100"))) == len(seeded.ids)  # without --speaker: all


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("list", "--speaker", ""), "--speaker"),
        (("search", "friday", "--speaker", "   "), "--speaker"),
        (("list", "-n", "0"), "--limit"),
        (("search", "friday", "-n", "lots"), "--limit"),
    ],
)
def test_bad_input_is_one_line(cli_env: dict[str, str], args: tuple[str, ...], word: str) -> None:
    r = history(cli_env, *args)
    assert r.returncode == 64 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and word in r.stderr and "Traceback" not in r.stderr, r.stderr


# ----------------------------------------------------------------------------------------------------- docx
@pytest.fixture(scope="module")
def daemon(workdir: Path, seeded: Seeded, cache_dir: Path) -> Iterator[HttpDaemon]:
    d = HttpDaemon(workdir, cache_dir)
    yield d
    d.stop()


def paragraphs(content: bytes) -> list[Any]:
    from docx import Document

    return list(Document(io.BytesIO(content)).paragraphs)


def turn(p: Any) -> tuple[str, str | None]:
    """(paragraph text, its bold run's text or None)."""
    bold = [r.text for r in p.runs if r.bold]
    assert len(bold) <= 1, p.text
    return p.text, bold[0] if bold else None


@pytest.mark.model
def test_docx_session_one_paragraph_per_turn(daemon: HttpDaemon, seeded: Seeded) -> None:
    import httpx2 as httpx

    r = httpx.get(f"{daemon.url}/api/sessions/{seeded.session}/export", params={"format": "docx"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    body = [turn(p) for p in paragraphs(r.content)[1:]]  # after the title
    assert body == [
        ("[00:01] S1: we should ship on friday the build is green", "S1: "),  # two utterances, one turn
        ("[00:08] Ms Li: I disagree about friday", "Ms Li: "),  # the session's name for S2
        ("[00:12] ok", None),  # no label: a line of its own, as before
        ("[00:14] S1: fine then", "S1: "),
    ]


@pytest.mark.model
def test_docx_selection_turns_within_each_record(daemon: HttpDaemon, seeded: Seeded) -> None:
    import httpx2 as httpx

    ids = [seeded.ids[n] for n in ("panel", "plain", "zh")]
    r = httpx.post(f"{daemon.url}/api/records/export", json={"ids": ids, "format": "docx"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    paras = paragraphs(r.content)
    headings = [p.text for p in paras if p.style.name == "Heading 2"]
    assert [h.split(" · ")[0] for h in headings] == ["panel.wav", "plain.wav", "会议.wav"]
    body = [turn(p) for p in paras if not p.style.name.startswith("Heading")]
    assert body == [
        ("[00:00] S1: hello there. how are you?", "S1: "),
        ("[00:02] Obi-Wan: general kenobi", "Obi-Wan: "),
        ("[00:05] a plain friday record.", None),  # without speakers: one paragraph per line, unchanged
        ("[00:06] no.", None),
        ("[00:08] 王经理: 今天讨论预算预算已经批准", "王经理: "),  # Chinese joins without spaces
        ("[00:11] S2: 好的", "S2: "),
    ]
