from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from daemon.audio.decode import SAMPLE_RATE, decode_file, iter_decode, wav_mismatch
from daemon.errors import AudioDecodeError


def tone(seconds: float = 1.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def wav_header(rate: int, data_bytes: int, channels: int = 1) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def write_wav(path: Path, audio: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm, 2)
    path.write_bytes(wav_header(rate, pcm.size * 2, channels) + pcm.tobytes())
    return path


def encode(path: Path, codec: str, rate: int = 48_000, layout: str = "stereo") -> Path:
    import av

    audio = tone(1.0, rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        frame_size = 1024
        channels = 2 if layout == "stereo" else 1
        for start in range(0, audio.size, frame_size):
            chunk = audio[start : start + frame_size]
            data = np.tile(chunk, (channels, 1)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("a.flac", "flac"),
        ("a.mp3", "libmp3lame"),
        ("a.m4a", "aac"),
        ("a.ogg", "libopus"),
        ("a.opus", "libopus"),
        ("a.webm", "libopus"),
        ("a.mp4", "aac"),
    ],
)
def test_common_formats_decode_to_16k_mono(tmp_path: Path, name: str, codec: str) -> None:
    path = encode(tmp_path / name, codec)
    audio = decode_file(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - 1.0) < 0.1, audio.size
    assert 0.3 < float(np.abs(audio).max()) < 0.9


def test_wav_resampled_and_downmixed(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "s.wav", tone(2.0, 44_100), 44_100, channels=2)
    audio = decode_file(path)
    assert abs(audio.size - 2 * SAMPLE_RATE) < 200


def test_streamed_blocks_bounded(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", tone(70.0), SAMPLE_RATE)
    blocks = list(iter_decode(path, block_s=30.0))
    assert len(blocks) >= 3 and max(b.size for b in blocks) < 32 * SAMPLE_RATE
    assert abs(sum(b.size for b in blocks) - 70 * SAMPLE_RATE) < 10


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not audio at all, just text\n" * 20), "not a readable audio"),
        (lambda p: p.write_bytes(wav_header(16_000, 0)), "no audio"),
        (lambda p: p.write_bytes(wav_header(2_000_000_000, 3200) + b"\0" * 3200), "unsupported sample rate"),
        (lambda p: p.write_bytes(np.random.default_rng(7).bytes(4096)), "not a readable audio|no audio"),
    ],
    ids=["empty", "text-renamed", "zero-length", "huge-rate", "random-bytes"],
)
def test_bad_audio_gives_one_line_error(tmp_path: Path, make: object, needle: str) -> None:
    p = tmp_path / "bad.wav"
    make(p)  # type: ignore[operator]
    with pytest.raises(AudioDecodeError) as exc:
        decode_file(p)
    msg = str(exc.value)
    assert any(n in msg for n in needle.split("|")) and "\n" not in msg and str(p) in msg


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="no such file"):
        decode_file(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError, match="is a directory"):
        decode_file(tmp_path)


def test_truncated_wav_decodes_what_is_there(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(2.0), SAMPLE_RATE)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + SAMPLE_RATE * 2])  # header says 2 s, holds 1 s
    audio = decode_file(cut)
    assert abs(audio.size - SAMPLE_RATE) < 100


def test_header_and_contents_disagree(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(2.0), SAMPLE_RATE).read_bytes()
    header, data = full[:44], full[44:]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full[: 44 + SAMPLE_RATE * 2])  # header says 2 s, holds 1 s
    n = sum(b.size for b in iter_decode(cut))
    assert wav_mismatch(cut, n) == "read 1.0 s of a header-declared 2.0 s (the file is cut short)"
    more = tmp_path / "more.wav"
    short = bytearray(header)
    struct.pack_into("<I", short, 40, SAMPLE_RATE * 2)  # header says 1 s, holds 2 s
    more.write_bytes(bytes(short) + data)
    n = sum(b.size for b in iter_decode(more))
    assert abs(n - SAMPLE_RATE) < 100  # what the header declares is what is read...
    assert wav_mismatch(more, n) == (  # ...and said so
        "read 1.0 s, as the header declares, but the file holds 2.0 s of audio data; the rest was not read"
    )


def test_well_formed_wavs_give_no_warning(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(2.0), SAMPLE_RATE)
    assert wav_mismatch(full, 2 * SAMPLE_RATE) is None
    # metadata after the audio (LIST/INFO, as many editors write) is not undeclared audio
    info = b"INFOISFT" + struct.pack("<I", 6) + b"asrbox"
    listed = tmp_path / "listed.wav"
    listed.write_bytes(full.read_bytes() + b"LIST" + struct.pack("<I", len(info)) + info)
    assert wav_mismatch(listed, 2 * SAMPLE_RATE) is None
    # a streaming writer's placeholder size means "until the end of the file"
    stream = bytearray(full.read_bytes())
    struct.pack_into("<I", stream, 40, 0xFFFFFFFF)
    (tmp_path / "stream.wav").write_bytes(bytes(stream))
    assert wav_mismatch(tmp_path / "stream.wav", 2 * SAMPLE_RATE) is None
    assert wav_mismatch(encode(tmp_path / "a.flac", "flac"), SAMPLE_RATE) is None  # not a WAV: nothing to say


def test_unknown_wav_format_tag(tmp_path: Path) -> None:
    raw = bytearray(write_wav(tmp_path / "t.wav", tone(1.0), SAMPLE_RATE).read_bytes())
    struct.pack_into("<H", raw, 20, 0x1234)
    bad = tmp_path / "tag.wav"
    bad.write_bytes(bytes(raw))
    with pytest.raises(AudioDecodeError) as exc:
        decode_file(bad)
    assert str(exc.value) == f"{bad}: unsupported WAV format tag 0x1234 (no decoder for it)"
