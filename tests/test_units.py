"""Fast unit layer: command validation, partial stability, bounded queues, topics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.live.partials import PartialTracker, units
from daemon.live.plumbing import DropOldestQueue, Heartbeat, LatestSlot
from daemon.mqtt.client import Command
from daemon.mqtt.commands import CommandError, HotwordsCmd, StartCmd, parse
from daemon.mqtt.topics import Topics


def cmd(name: str, payload: bytes | str, retained: bool = False) -> Command:
    return Command(name, payload.encode() if isinstance(payload, str) else payload, retained)


def test_commands_parse_good() -> None:
    assert isinstance(parse(cmd("start", "")), StartCmd)
    s = parse(cmd("start", json.dumps({"session_name": "Lesson", "language": "zh", "request_id": 7})))
    assert isinstance(s, StartCmd) and s.language == "zh" and s.request_id == 7
    h = parse(cmd("hotwords", json.dumps({"set": ["钉钉"], "add": ["通义千问"]})))
    assert isinstance(h, HotwordsCmd) and h.set == ["钉钉"]


@pytest.mark.parametrize(
    ("name", "payload", "needle"),
    [
        ("nope", "{}", "unknown command"),
        ("ping", "{", "not JSON"),
        ("ping", b"\xff\xfe", "not JSON"),
        ("ping", "42", "JSON object"),
        ("ping", '"x"', "JSON object"),
        ("start", '{"session_name": ["a"]}', "session_name"),
        ("start", '{"language": 1}', "language"),
        ("start", '{"language": "EN-us"}', "language"),
        ("hotwords", '{"set": [1, 2]}', "set"),
        ("hotwords", '{"add": ["' + "x" * 101 + '"]}', "hotword"),
        ("hotwords", '{"set": ' + json.dumps(["w"] * 501) + "}", "set"),
        ("stop", '{"extra": 1}', "unknown field"),
        ("ping", "{" + " " * 70_000 + "}", "too large"),
    ],
)
def test_commands_parse_bad(name: str, payload: str | bytes, needle: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse(cmd(name, payload))
    assert needle in str(exc.value)


def test_request_id_echoed_on_error() -> None:
    with pytest.raises(CommandError) as exc:
        parse(cmd("start", json.dumps({"request_id": "abc", "language": 5})))
    assert exc.value.request_id == "abc"


def test_partials_stable_never_changes() -> None:
    t = PartialTracker.new()
    sent: list[str] = []
    for hyp in ["hello", "hello world", "hello world how", "hello word how are", "hello world how are you"]:
        stable, _, _ = t.update(hyp)
        assert all(stable.startswith(prev) for prev in sent)
        sent.append(stable)
    assert sent[-1].startswith("hello")


def test_partials_chinese_by_character() -> None:
    assert units("今天 hello") == ["今", "天 ", "hello"]
    t = PartialTracker.new()
    t.update("我们今")
    stable, unstable, rev = t.update("我们今天开")
    assert stable == "我们" and unstable == "今天开" and rev == 2


def test_drop_oldest_queue_counts() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2 and [q.get(0), q.get(0), q.get(0), q.get(0.01)] == [2, 3, 4, None]


def test_latest_slot_counts_replaced() -> None:
    s: LatestSlot[int] = LatestSlot()
    s.put(1)
    s.put(2)
    assert s.dropped == 1 and s.take() == 2 and s.take() is None and not s


def test_heartbeat() -> None:
    h = Heartbeat("x", 1.0)
    assert h.healthy()
    assert not h.healthy(h.last + 2.0)


def test_topics() -> None:
    t = Topics("asrbox", "room1")
    assert t.final == "asrbox/room1/transcript/final" and t.commands == "asrbox/room1/cmd/+"
    assert t.command_name("asrbox/room1/cmd/start") == "start"
    assert t.command_name("asrbox/room1/cmd/start/result") is None
    assert t.command_name("asrbox/other/cmd/start") is None


class _FakeStream:
    def get_read_available(self) -> int:
        return 0


def _mic_at(clock: list[float]) -> Any:
    from daemon.audio.source import MicrophoneSource

    mic = MicrophoneSource()
    mic._stream, mic._rate, mic._mono0 = _FakeStream(), 16000, clock[0]
    return mic


def test_microphone_drift_is_followed_and_a_real_loss_is_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sound card 0.1 % slower than the host clock for 3 h: never a false gap, the stream clock stays within
    50 ms of the device. Then 1 s of audio lost at once (an overflow): one gap of that size."""
    import daemon.audio.source as source

    clock = [100.0]
    monkeypatch.setattr(source.time, "monotonic", lambda: clock[0])
    mic = _mic_at(clock)
    block = 1600
    for _ in range(3 * 36000):  # 3 h of 100 ms blocks
        clock[0] += 0.1 * 1.001
        offset = mic._offset(block)
        assert offset == mic._samples, "a false gap"
        mic._samples = offset + block
        assert abs(mic._clock_samples() - mic._samples) < 0.05 * 16000
    clock[0] += 1.0 + 0.1  # 1 s lost, then the next block
    offset = mic._offset(block)
    assert abs((offset - mic._samples) / 16000 - 1.0) < 0.05
