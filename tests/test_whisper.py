"""The Whisper engine against plain faster-whisper, its determinism, and the engine/VAD registries."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, eval_clip
from textmetrics import error_rate

from daemon.asr.engine import ENGINES, load_engine
from daemon.asr.whisper import COMPRESSION_RATIO_THRESHOLD, WINDOW_S, compression_ratio
from daemon.audio.decode import SAMPLE_RATE, decode_file
from daemon.audio.vad import VADS, load_vad
from daemon.errors import ConfigError, ModelError
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions


def test_matches_plain_faster_whisper(engine: Any, cache_dir: Path) -> None:
    """Contract: our batched decoder gives faster-whisper's text (beam 5, same model folder, same compute type)
    and timestamps in order and inside the audio."""
    from faster_whisper import WhisperModel

    from daemon.asr.models import prepare_embedded_model

    path, row = eval_clip("en_jfk")
    audio = decode_file(path)
    ours = engine.transcribe([audio], DecodeOptions())[0]
    plain = WhisperModel(str(prepare_embedded_model(cache_dir)), compute_type=engine.info.compute_type)
    segments, _ = plain.transcribe(str(path), beam_size=5)
    theirs = "".join(s.text for s in segments)
    assert theirs.strip() and ours.language == "en"
    assert error_rate(theirs, ours.text, "en") <= 0.05, (theirs, ours.text)
    assert error_rate(row["text"], ours.text, "en") <= 0.1
    duration = audio.size / SAMPLE_RATE
    times = [t for s in ours.segments for t in (s.start, s.end)]
    assert times and times == sorted(times) and times[0] >= 0.0 and times[-1] <= duration + 1e-6


def _noisy(clip_id: str, snr_db: float, seed: int) -> Audio:
    audio = decode_file(eval_clip(clip_id)[0])
    noise = np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    noise *= np.sqrt(float(np.mean(audio**2)) / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


# Chinese under white noise at 0 dB: beam search's result fails Whisper's log-probability check.
HARD_CLIP = ("zh_wenetspeech_TEST_NET_Y0000000000_S00000", 0.0, 1)


def test_same_audio_same_text(engine: Any) -> None:
    """A window that fails Whisper's quality checks goes through the fallback; its text must not depend on the
    call order or on what else is in the batch (the fallback used to sample with an unseeded generator)."""
    hard = _noisy(*HARD_CLIP)
    first = engine._prepare([hard], [0], DecodeOptions(language="zh"))
    attempt = engine._attempts(DecodeOptions())[0]
    assert not dict(engine._generate(first, [0], attempt))[0].passes, "the clip no longer exercises the fallback"
    others = [decode_file(eval_clip(c)[0]) for c in ("zh_paddlespeech_zh", "en_jfk", "yue_sensevoice_yue-11")]
    texts = [
        engine.transcribe([hard], DecodeOptions(language="zh"))[0].text,
        engine.transcribe([others[0], hard, others[1]], DecodeOptions(language="zh"))[1].text,
        engine.transcribe([others[2], others[0], others[1], hard], DecodeOptions(language="zh"))[3].text,
    ]
    assert texts[0] and texts.count(texts[0]) == 3, texts


LOOP_CLIP = ("zh_qwen3asr_noise2", -6.0, 1)  # at -6 dB beam search loops (要不然要不然...), compression ratio 17


def test_loop_broken_the_same_way(engine: Any) -> None:
    """A window caught in a repetition loop is decoded again (repetition penalty, then no repeated 4-grams): the
    loop is gone, and the result is the same whatever the batch."""
    loop = _noisy(*LOOP_CLIP)
    first = engine._prepare([loop], [0], DecodeOptions())
    cand = dict(engine._generate(first, [0], engine._attempts(DecodeOptions())[0]))[0]
    assert cand.compression > COMPRESSION_RATIO_THRESHOLD, "the clip no longer makes beam search loop"
    alone = engine.transcribe([loop], DecodeOptions())[0]
    other = decode_file(eval_clip("zh_paddlespeech_zh")[0])
    batched = engine.transcribe([other, loop], DecodeOptions())[1]
    assert alone.text and compression_ratio(alone.text) <= COMPRESSION_RATIO_THRESHOLD, alone.text
    assert batched.text == alone.text


def test_word_times_leave_the_text_as_it_is(engine: Any) -> None:
    """words=True adds word times and changes nothing else (same windows, same text, same segments); a segment's
    words joined give its text, in time order inside the segment's window; a clip over 30 s keeps its words in
    chunk time. Without words no segment has any."""
    clips = [decode_file(eval_clip(c)[0]) for c in ("en_jfk", "zh_wenetspeech_TEST_NET_Y0000000000_S00000")]
    long = np.concatenate([clips[0]] * 3)  # 33 s: two windows
    plain = engine.transcribe([*clips, long], DecodeOptions())
    timed = engine.transcribe([*clips, long], DecodeOptions(words=True))
    assert not any(s.words for t in plain for s in t.segments)
    strip = [[(s.start, s.end, s.text) for s in t.segments] for t in timed]
    assert strip == [[(s.start, s.end, s.text) for s in t.segments] for t in plain]
    for t, audio in zip(timed, [*clips, long], strict=True):
        duration = audio.size / SAMPLE_RATE
        for s in t.segments:
            assert s.words and "".join(w.text for w in s.words).strip() == s.text, s
            times = [x for w in s.words for x in (w.start, w.end)]
            assert times == sorted(times) and times[0] >= 0.0 and times[-1] <= duration + 1e-6, s
    second = [s for s in timed[2].segments if s.start >= WINDOW_S]  # the second window's words, in chunk time
    assert second and all(w.start >= WINDOW_S for s in second for w in s.words), timed[2].segments


def test_engine_registry() -> None:
    for name, target in ENGINES.items():
        module, _, cls = target.partition(":")
        assert module.startswith("daemon.asr.") and cls, name
    settings = AsrSettings.model_construct(engine="nope")
    with pytest.raises(ConfigError, match=r"asr\.engine: 'nope'"):
        load_engine(settings)


def test_vad_registry() -> None:
    assert set(VADS) == {"silero", "fsmn"}
    vad = load_vad("silero")
    assert vad.probs(np.zeros((2, vad.frame_samples), dtype=np.float32)).shape == (2,)
    with pytest.raises(ModelError, match="unknown VAD 'nope'"):
        load_vad("nope")


def test_text_does_not_import_asr() -> None:
    """The text pipeline reads the neutral modules (daemon.transcript, daemon.lang), never an engine's."""
    for path in (ROOT / "daemon" / "text").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("daemon.asr"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("daemon.asr") for a in node.names), path.name
