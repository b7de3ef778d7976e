#!/usr/bin/env python3
"""Speaker diarization benchmark: test meetings built from eval clips of different speakers.

Each meeting has 2, 3 or 5 speakers (zh and en mixed; clips with more than one voice left out of the pool);
turns of 2-15 s cut from each speaker's clips, some back-to-back, most after a 0.2-1.5 s pause. The
reference is where Silero VAD hears speech in each turn's clip alone. Reports per meeting and overall: DER
(0.25 s collar) and whether the speaker count is right, for the file path (VAD speech mask + segmentation +
embeddings + clustering) and the live path (the live segmenter's utterances, cut where another voice takes
over, one embedding each, online clustering); the added real-time factor of the file path and the cost per
live final (embedding + assignment) in CPU seconds of the process (time.process_time: what the work costs,
whatever else the machine runs), next to Whisper base's CPU seconds for the same audio (--baseline meetings:
the file in 30 s windows; each live final, short window first); and for those finals the added wall-clock
latency, the embedding on its own thread beside the decoding as the ASR worker runs it. ONNX threads:
--threads (default 1).

    .venv/bin/python scripts/bench_speakers.py --models DIR [--meetings 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.audio.decode import SAMPLE_RATE, decode_file  # noqa: E402
from daemon.audio.segmenter import segment_stream  # noqa: E402
from daemon.audio.vad import SileroVad  # noqa: E402
from daemon.settings import VadSettings  # noqa: E402
from daemon.speakers.change import ChangeDetector, TurnWatch, Verdict  # noqa: E402
from daemon.speakers.cluster import Bounds, OnlineSpeakers  # noqa: E402
from daemon.speakers.diarize import Diarizer  # noqa: E402
from daemon.speakers.metrics import Span, der  # noqa: E402
from daemon.speakers.models import load  # noqa: E402
from daemon.speakers.speech import Spans, merge, voiced_spans  # noqa: E402

Audio = npt.NDArray[np.float32]


# Clips with more than one voice: a meeting built from them would hold speakers the reference does not know of,
# and a diarizer that finds them would be scored wrong. Their own references say so.
MULTI_VOICE = {
    "zh_funasrnano_far_3": "a dialogue of two people (camping: question, answer, reply)",
    "zh_funasrnano_far_5": "from the same far-field demo set as far_3: who speaks is not known",
    "zh_qwen3asr_noise2": "a phone call: the caller and the IVR's prompts",
    "en_qwen3asr_f1_noise": "team radio: an engineer and the driver (Charles)",
}


def speaker_key(clip_id: str) -> str:
    """Clips known to share a speaker share a key; every other clip is its own speaker."""
    rules = [
        (r"en_librispeech_(\d+)-", "libri{}"),
        (r"en_hifitts(\d+)_", "hifitts{}"),
        (r"en_librivox_sense_and_sensibility", "librivox-sense"),
        (r"en_sphinx_cards", "sphinx-cards"),
        (r"zh_aishell1_BAC009(S\d+)", "aishell{}"),
    ]
    for pattern, key in rules:
        m = re.match(pattern, clip_id)
        if m:
            return key.format(*m.groups())
    return clip_id


@dataclass
class Speaker:
    key: str
    lang: str
    clips: list[Audio]
    cursor: int = 0
    offset: int = 0

    def take(self, seconds: float) -> Audio:
        """The next `seconds` of this speaker's speech (clips in turn, wrapping around)."""
        want = int(seconds * SAMPLE_RATE)
        clip = self.clips[self.cursor % len(self.clips)]
        piece = clip[self.offset : self.offset + want]
        self.offset += want
        if self.offset >= clip.size - SAMPLE_RATE:
            self.cursor, self.offset = self.cursor + 1, 0
        return piece


def load_pool(eval_dir: Path) -> list[Speaker]:
    rows = [json.loads(x) for x in (eval_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    pool: dict[str, Speaker] = {}
    for r in rows:
        if r["lang"] not in ("zh", "en") or r["duration_s"] < 2.5 or "long_concat" in r["id"] or r["id"] in MULTI_VOICE:
            continue
        key = speaker_key(r["id"])
        pool.setdefault(key, Speaker(key, r["lang"], [])).clips.append(decode_file(eval_dir / r["path"]))
    return sorted(pool.values(), key=lambda s: s.key)


def speech_spans(piece: Audio, at: float, who: str, vad: SileroVad) -> list[Span]:
    vad.reset()
    utts = segment_stream([piece], vad, VadSettings())
    return [Span(at + u.start_s, at + u.last_voiced / SAMPLE_RATE, who) for u in utts]


def build_meeting(pool: list[Speaker], n: int, rng: np.random.Generator, vad: SileroVad) -> tuple[Audio, list[Span]]:
    zh = [s for s in pool if s.lang == "zh"]
    en = [s for s in pool if s.lang == "en"]
    n_zh = int(rng.integers(1, n)) if n > 1 else 1
    chosen = list(rng.choice(len(zh), n_zh, replace=False))
    picks = [zh[i] for i in chosen] + [en[i] for i in rng.choice(len(en), n - n_zh, replace=False)]
    turns = int(rng.integers(2 * n + 2, 3 * n + 4))
    parts: list[Audio] = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    ref: list[Span] = []
    at = 0.5
    last = -1
    order = [i % n for i in range(n)] + [int(x) for x in rng.integers(0, n, turns - n)]
    for who in order:
        if who == last:
            who = (who + 1) % n
        last = who
        piece = picks[who].take(float(rng.uniform(2.0, 15.0)))
        ref += speech_spans(piece, at, picks[who].key, vad)
        parts.append(piece)
        at += piece.size / SAMPLE_RATE
        gap = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.2, 1.5))
        parts.append((rng.standard_normal(int(gap * SAMPLE_RATE)) * 0.001).astype(np.float32))
        at += gap
    return np.concatenate(parts), ref


def live_path(
    audio: Audio, diarizer: Diarizer, threshold: float, engine: object | None, split: bool
) -> tuple[list[Span], list[float], list[float], list[float], list[tuple[float, float]]]:
    """The daemon's live path: the live segmenter's utterances, one embedding each, online clustering. With
    `engine`, also the baseline: Whisper's time for the same final (short window first, as live finals)."""
    from daemon.transcript import DecodeOptions

    online = OnlineSpeakers(threshold=threshold)
    spans, costs, base = [], [], []
    added: list[tuple[float, float]] = []
    detector = ChangeDetector(diarizer.models) if split else None
    split_costs: list[float] = []

    def timed(piece: Audio, skip: Sequence[int]) -> Verdict:
        assert detector is not None
        t = time.process_time()
        verdict = detector(piece, skip)
        split_costs.append(time.process_time() - t)
        return verdict

    watch = TurnWatch(timed).check if split else None
    for u in segment_stream([audio], SileroVad(), VadSettings(), watch=watch):
        if engine is not None:
            t = time.process_time()
            engine.transcribe([u.audio], DecodeOptions(short_first=True))  # type: ignore[attr-defined]
            base.append(time.process_time() - t)
            added.append(added_latency(u.audio, engine, diarizer, len(base) % 2 == 0))
        t = time.process_time()
        vector = diarizer.embedder.embed(u.audio)
        label = online.assign(vector) if vector is not None else None
        costs.append(time.process_time() - t)
        if label is not None:
            spans.append(Span(u.start_s, u.last_voiced / SAMPLE_RATE, f"S{label + 1}"))
    return spans, costs, base, split_costs, added


def vad_speech(audio: Audio) -> Spans:
    """Where the file transcriber's VAD hears speech: the mask `asrbox transcribe --speakers` passes on."""
    from daemon.batch.transcribe import chunk_stream

    spans: list[tuple[float, float]] = []
    for chunk in chunk_stream([audio], SileroVad(), VadSettings()):
        spans += voiced_spans(chunk.voiced, chunk.offset_s)
    return merge(spans)


def added_latency(audio: Audio, engine: object, diarizer: Diarizer, alone_first: bool) -> tuple[float, float]:
    """As the ASR worker does it: the final's embedding on its own thread while the final is decoded. Returns
    (wall seconds the final is later than its decoding alone, seconds it waited for the embedding after its
    text was ready). The two orders alternate, so warm caches favour neither."""
    from concurrent.futures import ThreadPoolExecutor

    from daemon.transcript import DecodeOptions

    def decode() -> None:
        engine.transcribe([audio], DecodeOptions(short_first=True))  # type: ignore[attr-defined]

    def alone() -> float:
        t = time.perf_counter()
        decode()
        return time.perf_counter() - t

    def both() -> tuple[float, float]:
        with ThreadPoolExecutor(1) as pool:
            t = time.perf_counter()
            pending = pool.submit(diarizer.embedder.embed, audio)
            decode()
            text_ready = time.perf_counter()
            pending.result()
            done = time.perf_counter()
        return done - t, done - text_ready

    if alone_first:
        a = alone()
        total, waited = both()
    else:
        total, waited = both()
        a = alone()
    return total - a, waited


def transcription_time(audio: Audio, engine: object) -> float:
    """The baseline: the embedded Whisper on the meeting in 30 s windows (what `asrbox transcribe` decodes)."""
    from daemon.transcript import DecodeOptions

    step = 30 * SAMPLE_RATE
    windows = [audio[i : i + step] for i in range(0, audio.size, step)]
    t = time.process_time()
    engine.transcribe(windows, DecodeOptions())  # type: ignore[attr-defined]
    return time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True, help="speaker model folder")
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--meetings", type=int, default=4, help="meetings per speaker count")
    ap.add_argument("--counts", default="2,3,5")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads ([speakers] threads)")
    ap.add_argument("--step", type=float, default=10.0, help="segmentation window step, seconds")
    ap.add_argument("--threshold", type=float, default=Bounds().threshold)
    ap.add_argument("--live-threshold", type=float, default=OnlineSpeakers().threshold)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--no-split", action="store_true", help="live: no cut where another voice takes over")
    ap.add_argument("--no-mask", action="store_true", help="diarize files without the VAD's speech mask")
    ap.add_argument("--json", type=Path, help="write the per-meeting results here")
    ap.add_argument("--baseline", type=int, default=3, help="meetings also transcribed by Whisper (the baseline)")
    args = ap.parse_args()
    from daemon.asr.engine import load_engine
    from daemon.settings import AsrSettings

    engine = load_engine(AsrSettings()) if args.baseline else None  # the daemon's default: all cores

    diarizer = Diarizer(load(args.models), threads=args.threads)
    pool = load_pool(args.eval_dir)
    vad = SileroVad()
    rng = np.random.default_rng(args.seed)
    rows = []
    live_costs: list[float] = []
    latency: list[tuple[float, float]] = []  # per timed final: (added wall s, s waited for the embedding)
    split_costs: list[float] = []  # CPU of each change-of-voice check (segmenter thread, during speech)
    paired: list[tuple[float, float]] = []  # (speaker ms, whisper ms) per final of the baseline meetings
    for n in [int(x) for x in args.counts.split(",")]:
        for m in range(args.meetings):
            audio, ref = build_meeting(pool, n, rng, vad)
            seconds = audio.size / SAMPLE_RATE
            speech = None if args.no_mask else vad_speech(audio)  # computed by the transcription anyway: not timed
            t = time.process_time()  # CPU seconds of the process: what the work costs, whatever else runs
            result = diarizer(audio, Bounds(threshold=args.threshold), step_s=args.step, speech=speech)
            took = time.process_time() - t
            hyp = [Span(x.start, x.end, f"S{x.speaker + 1}") for x in result.turns]
            baseline = engine if len(rows) < args.baseline else None
            split = not args.no_split
            live, costs, base, checks, lat = live_path(audio, diarizer, args.live_threshold, baseline, split)
            latency += lat
            split_costs += checks
            live_costs += costs
            paired += list(zip(costs, base, strict=False))
            f, lv = der(ref, hyp), der(ref, live)
            base = transcription_time(audio, engine) if engine is not None and len(rows) < args.baseline else None
            row = {
                "speakers": n,
                "meeting": m,
                "seconds": round(seconds, 1),
                "file_der": round(f.der, 4),
                "file_count": result.speakers,
                "file_miss_fa_conf": [round(f.missed, 2), round(f.false_alarm, 2), round(f.confusion, 2)],
                "live_der": round(lv.der, 4),
                "live_count": len({s.speaker for s in live}),
                "rtf": round(took / seconds, 4),
                "whisper_rtf": round(base / seconds, 4) if base is not None else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    total = sum(r["seconds"] for r in rows)
    summary = {
        "meetings": len(rows),
        "file_der_mean": round(statistics.mean(r["file_der"] for r in rows), 4),
        "file_count_right": sum(r["file_count"] == r["speakers"] for r in rows) / len(rows),
        "live_der_mean": round(statistics.mean(r["live_der"] for r in rows), 4),
        "live_count_right": sum(r["live_count"] == r["speakers"] for r in rows) / len(rows),
        "file_rtf": round(sum(r["rtf"] * r["seconds"] for r in rows) / total, 4),
        "live_ms_per_final_p50": round(1000 * statistics.median(live_costs), 1),
        "live_ms_per_final_p95": round(1000 * float(np.percentile(live_costs, 95)), 1),
        "audio_s": round(total, 1),
        "live_change_checks": len(split_costs),
        "live_change_check_ms_p50": round(1000 * statistics.median(split_costs), 1) if split_costs else None,
        "live_change_check_ms_p95": round(1000 * float(np.percentile(split_costs, 95)), 1) if split_costs else None,
        "live_change_cpu_per_audio_s": round(sum(split_costs) / total, 4),
    }
    based = [r for r in rows if r["whisper_rtf"] is not None]
    if based:
        diar = sum(r["rtf"] * r["seconds"] for r in based)
        summary["speakers_time_vs_whisper"] = round(diar / sum(r["whisper_rtf"] * r["seconds"] for r in based), 3)
    if latency:
        summary["live_added_wall_ms_p50"] = round(1000 * statistics.median(a for a, _ in latency), 1)
        summary["live_added_wall_ms_p95"] = round(1000 * float(np.percentile([a for a, _ in latency], 95)), 1)
        summary["live_wait_for_embedding_ms_p50"] = round(1000 * statistics.median(w for _, w in latency), 1)
    if paired:
        summary["live_finals_timed_vs_whisper"] = len(paired)
        summary["live_speaker_vs_whisper_final_p50"] = round(statistics.median(a / b for a, b in paired), 3)
        summary["live_whisper_ms_per_final_p50"] = round(1000 * statistics.median(b for _, b in paired), 1)
    for n in sorted({r["speakers"] for r in rows}):
        sub = [r for r in rows if r["speakers"] == n]
        summary[f"{n}spk"] = {
            "file_der": round(statistics.mean(r["file_der"] for r in sub), 4),
            "file_count_right": sum(r["file_count"] == n for r in sub) / len(sub),
            "live_der": round(statistics.mean(r["live_der"] for r in sub), 4),
            "live_count_right": sum(r["live_count"] == n for r in sub) / len(sub),
        }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
