"""Text benchmarks: hotword recall (four layer settings) and ITN accuracy/speed.

Hotwords: every zh/en clip of ../shared/eval is transcribed four times with the whole term list of
scripts/data/hotword_terms.tsv as the box's list: no hotwords, engine biasing only (Whisper prompt),
correction only (pinyin/phonetic), both. Recall = term occurrences (clip, term) found in the output. False
replacements = tokens changed to a term (or a term inserted) where the reference has no such term, over all
reference tokens (words; characters for Chinese).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, eval_rows

TERMS_FILE = ROOT / "scripts" / "data" / "hotword_terms.tsv"
CONDITIONS = {
    "none": {"hotword_biasing": False, "hotword_correction": False},
    "engine biasing": {"hotword_biasing": True, "hotword_correction": False},
    "correction": {"hotword_biasing": False, "hotword_correction": True},
    "both": {"hotword_biasing": True, "hotword_correction": True},
}


def _flat(text: str, lang: str) -> str:
    from bench import normalize

    units = normalize(text, lang)
    return "".join(units) if lang in ("zh", "yue") else " " + " ".join(units) + " "


def _contains(text: str, term: str, lang: str) -> int:
    return _flat(text, lang).count(_flat(term, lang).strip() if lang in ("zh", "yue") else _flat(term, lang))


def hotwords(manifest: Path) -> str:
    from bench import normalize

    from daemon.asr.engine import load_engine
    from daemon.audio.vad import SileroVad
    from daemon.batch.transcribe import BatchTranscriber
    from daemon.settings import TextSettings, load_settings
    from daemon.text.pipeline import TextPipeline

    pairs = [line.split("\t") for line in TERMS_FILE.read_text(encoding="utf-8").splitlines() if line[:1] not in "#"]
    terms = tuple(dict.fromkeys(t.strip() for _, t in pairs))
    rows = eval_rows(manifest, {"zh", "en"})
    wanted = {(c, t.strip()) for c, t in pairs}
    settings = load_settings(None, {"asr": {"batch_size": 8}})
    engine = load_engine(settings.asr)
    files = [manifest.parent / r["path"] for r in rows]
    lines = [
        "| setting | term recall | found / occurrences | false replacements | of reference tokens | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, flags in CONDITIONS.items():
        text = TextSettings(**flags)
        runner = BatchTranscriber(engine, SileroVad, settings.vad, TextPipeline(text), None, 8, hotwords=terms)
        t0 = time.perf_counter()
        hyps: dict[str, Any] = {}
        for f, outcome in zip(files, runner.run(files), strict=True):
            hyps[str(f)] = outcome.transcript
        dt = time.perf_counter() - t0
        found = total = false = tokens = 0
        for r, f in zip(rows, files, strict=True):
            t = hyps[str(f)]
            hyp = t.text if t else ""
            tokens += len(normalize(r["text"], r["lang"]))
            for term in terms:
                in_ref = _contains(r["text"], term, r["lang"])
                in_hyp = _contains(hyp, term, r["lang"])
                if (r["id"], term) in wanted:
                    total += in_ref
                    found += min(in_ref, in_hyp)
                    if in_hyp < in_ref:
                        print(f"bench:   {name}: missed {term!r} in {r['id']}: {hyp[:80]!r}", file=sys.stderr)
                if in_hyp > in_ref:  # a term where the speaker did not say it
                    false += (in_hyp - in_ref) * len(normalize(term, r["lang"]))
                    print(f"bench:   {name}: false {term!r} in {r['id']}: {hyp[:80]!r}", file=sys.stderr)
        print(f"bench: hotwords {name}: {found}/{total}, false {false}/{tokens}, {dt:.1f} s", file=sys.stderr)
        lines.append(
            f"| {name} | {found / total:.1%} | {found} / {total} | {false} | {false / tokens:.2%} | {dt:.1f} |"
        )
    engine.close()
    return (
        f"{len(terms)} terms in {len(wanted)} clip/term pairs ({TERMS_FILE.relative_to(ROOT)}), scored on all "
        f"{len(rows)} zh + en clips of the eval set with the whole list active on every clip.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def itn() -> str:
    from daemon.text.itn import Itn

    table = ROOT / "tests" / "data" / "itn_cases.tsv"
    rows = [x.split("\t") for x in table.read_text(encoding="utf-8").splitlines() if x.strip() and x[0] != "#"]
    n = Itn()
    t0 = time.perf_counter()
    for lang in ("zh", "en"):
        n.normalize("一" if lang == "zh" else "one two", lang)
    load = time.perf_counter() - t0
    lines = ["| language | kind | cases | right | over-converted |", "|---|---|---|---|---|"]
    t0 = time.perf_counter()
    for lang in ("zh", "en"):
        for kind in ("convert", "keep"):
            sel = [r for r in rows if r[0] == lang and r[1].startswith(kind)]
            ok = sum(n.normalize(r[2], lang) == r[3] for r in sel)
            over = len(sel) - ok if kind == "keep" else 0
            lines.append(f"| {lang} | {kind} | {len(sel)} | {ok} | {over} |")
    per = (time.perf_counter() - t0) / len(rows) * 1000
    return (
        f"Case table `tests/data/itn_cases.tsv` ({len(rows)} cases). Grammar load {load:.2f} s; "
        f"{per:.1f} ms per sentence.\n\n" + "\n".join(lines) + "\n"
    )
