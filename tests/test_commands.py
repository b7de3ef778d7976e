"""Hostile MQTT command payloads: `parse` answers every one with a one-line `CommandError` (never another
exception), the reason can be published, and whatever it accepts holds only clean text (issue #11, bad input)."""

from __future__ import annotations

import json
import random
import unicodedata
from typing import Any

import pytest

from daemon.mqtt.client import MAX_COMMAND_BYTES, Command
from daemon.mqtt.commands import MAX_REASON, CommandError, HotwordsCmd, PronounceCmd, StartCmd, parse
from daemon.mqtt.topics import COMMANDS
from daemon.text.hotwords import unsafe_character


def cmd(name: str, payload: bytes | str) -> Command:
    return Command(name, payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload, False)


def js(obj: Any) -> str:
    return json.dumps(obj)  # ensure_ascii: lone surrogates travel as \ud800 escapes, as a hostile client sends them


def assert_publishable(exc: CommandError) -> None:
    reason = str(exc)
    assert reason and "\n" not in reason and "\r" not in reason and len(reason) <= MAX_REASON
    assert unsafe_character(reason) is None
    # what MqttClient.reply does with it: must not raise (a lone surrogate here meant no reply at all)
    json.dumps({"ok": False, "error": reason, "request_id": exc.request_id}, ensure_ascii=False).encode("utf-8")


HOSTILE = [
    ("ping", "[" * 30_000 + "]" * 30_000, "nested too deep"),
    ("ping", '{"a": ' + "[" * 20 + "]" * 20 + "}", "nested too deep"),
    ("start", "{" * 30_000, "nested too deep"),
    ("ping", '{"request_id": ' + "9" * 5000 + "}", "number is too long"),
    ("hotwords", '{"set": [' + "1" * 5000 + "]}", "number is too long"),
    ("ping", '{"request_id": ' + "9" * 4000 + "}", "request_id"),
    ("ping", '{"request_id": 1e999}', "request_id"),
    ("ping", js({"request_id": "\ud800"}), "request_id"),
    ("ping", js({"request_id": "x" * 201}), "request_id"),
    ("hotwords", js({"set": ["a\ud800b"] * 3}), "set: item 0 contains U+D800 (a lone surrogate)"),
    (
        "hotwords",
        js({"set": ["\ud800\udfff\ud83d"]}),
        "set: item 0 contains U+D83D (a lone surrogate)",
    ),  # a pair, then one
    ("hotwords", js({"add": ["ok", "bad\x00word"]}), "add: item 1 contains U+0000 (a control character)"),
    ("hotwords", js({"remove": ["\x1b[31m"]}), "remove: item 0 contains U+001B"),
    ("hotwords", js({"add": ["abc\x85"]}), "U+0085 (a control character)"),
    ("hotwords", js({"set": ["\u202eKubernetes"]}), "set: item 0 contains U+202E (a bidi control)"),
    ("hotwords", js({"set": ["a\u2066b"]}), "U+2066 (a bidi control)"),
    ("hotwords", js({"set": ["\u200fx"]}), "U+200F (a bidi control)"),
    ("hotwords", js({"set": ["\u061cx"]}), "U+061C (a bidi control)"),
    ("hotwords", js({"set": ["钉\ue000钉"]}), "set: item 0 contains U+E000 (a private-use character)"),
    ("hotwords", js({"set": ["\U000f0042"]}), "U+F0042 (a private-use character)"),
    ("hotwords", js({"set": ["\u3000 \t"]}), "set: item 0 contains U+0009"),
    ("hotwords", js({"set": ["\u3000 "]}), "1 to 100 characters"),
    ("hotwords", js({"set": ["\ud800"] * 5_000}), "set: item 0 contains U+D800"),
    ("start", js({"session_name": "Lesson\x00"}), "session_name: contains U+0000"),
    ("start", js({"session_name": "\u202edrow"}), "session_name: contains U+202E"),
    ("start", js({"language": "\ud800"}), "language"),
    ("pronounce", js({"target": "hello\ud800"}), "target: contains U+D800"),
    ("pronounce", js({"target": "hi", "learner": "\u2067ann"}), "learner: contains U+2067"),
    ("pronounce", js({"target": "\x7f"}), "target: contains U+007F"),
    ("pronounce", js({"target": " \u3000 "}), "target must not be empty"),
    ("ping", js({"\ud800": 1}), "a field name contains U+D800"),
    ("ping", js({"\u202e" * 5000: 1}), "a field name contains U+202E"),
    ("ping", js({"k" * 60_000: 1}), "unknown field"),
    ("ping", b"\xed\xa0\x80", "not UTF-8"),  # a surrogate encoded as UTF-8 bytes
    ("ping", b"\x00\x00\x00", "not JSON"),
    ("ping", b'{"request_id": "a"}\x00', "not JSON"),
    ("ping", "NaN", "JSON object"),
    ("ping", "[]", "JSON object"),
    ("ping", " " * (MAX_COMMAND_BYTES + 1), "too large"),
    ("listening", js({"on": "true"}), "on"),
    ("\ud800", "{}", "unknown command"),
    ("ping\x00\u202e", "{}", "unknown command"),
]


@pytest.mark.parametrize(
    ("name", "payload", "needle"), HOSTILE, ids=[f"{i}-{h[0][:10]}" for i, h in enumerate(HOSTILE)]
)
def test_hostile_payloads_get_one_clear_line(name: str, payload: str | bytes, needle: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse(cmd(name, payload))
    assert needle in str(exc.value)
    assert_publishable(exc.value)


def test_request_id_is_echoed_only_when_it_can_be() -> None:
    with pytest.raises(CommandError) as exc:
        parse(cmd("hotwords", js({"request_id": "r-1", "add": ["\x00"]})))
    assert exc.value.request_id == "r-1"
    with pytest.raises(CommandError) as exc:
        parse(cmd("hotwords", js({"request_id": "\ud800", "add": ["ok"]})))
    assert exc.value.request_id is None
    with pytest.raises(CommandError) as exc:
        parse(cmd("ping", js({"request_id": 2**70})))
    assert exc.value.request_id is None


def test_accepted_text_is_nfc_and_stripped() -> None:
    h = parse(cmd("hotwords", js({"set": ["  Cafe\u0301 ", "\u3000钉钉"], "remove": ["x "]})))
    assert isinstance(h, HotwordsCmd) and h.set == ["Café", "钉钉"] and h.remove == ["x"]
    s = parse(cmd("start", js({"session_name": " Lesson 1 ", "request_id": 2**63 - 1})))
    assert isinstance(s, StartCmd) and s.session_name == "Lesson 1" and s.request_id == 2**63 - 1
    p = parse(cmd("pronounce", js({"target": "  我们用钉钉开会 😀 ", "learner": "ann"})))
    assert isinstance(p, PronounceCmd) and p.target == "我们用钉钉开会 😀"


# --- property style: random bytes and mutated payloads ---------------------------------------------------------

_PIECES = [
    '"\\ud800"', '"\\u0000"', '"\\u202e"', '"\\ue000"', '"ok"', '"钉钉"', "1" * 50, "9" * 4400, "-0", "1e999",
    "true", "null", "[]", "{}", '"' + "x" * 120 + '"', "[" * 40, "]" * 40, '{"a":', ",", ":", '"\\', "\\u12",
]  # fmt: skip
_FIELDS = ["request_id", "set", "add", "remove", "session_name", "language", "on", "target", "learner", "x"]


def _random_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # raw bytes
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:  # a JSON object with hostile values
        fields = [f'"{rng.choice(_FIELDS)}": {_value(rng)}' for _ in range(rng.randrange(0, 4))]
        return ("{" + ", ".join(fields) + "}").encode()
    if kind == 2:  # random pieces glued together
        return "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 12))).encode()
    good = js({"request_id": "r", "set": ["钉钉", "Kubernetes"], "target": "hi", "on": True}).encode()
    data = bytearray(good)
    for _ in range(rng.randrange(1, 6)):  # a valid payload with bytes flipped, cut or inserted
        i = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            del data[i:]
        else:
            data[i:i] = rng.randbytes(rng.randrange(1, 8))
        if not data:
            break
    return bytes(data)


def _value(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_PIECES)
    chars = [chr(rng.choice([0, 0x7, 0x85, 0x202E, 0x2066, 0xE000, 0xD800, 0x41, 0x94C9, 0x1F600, 0x301]))]
    return "[" + json.dumps("".join(chars * rng.randrange(1, 4))) + "]"


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, list | tuple):
        return [s for item in obj for s in _strings(item)]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    return []


def test_random_payloads_raise_only_command_error() -> None:
    rng = random.Random(11)
    accepted = rejected = 0
    for _ in range(4000):
        name = rng.choice(COMMANDS)
        payload = _random_payload(rng)
        try:
            parsed = parse(Command(name, payload, False))
        except CommandError as exc:
            assert_publishable(exc)
            rejected += 1
            continue
        accepted += 1
        for s in _strings(parsed.model_dump()):  # whatever got through is clean text
            assert unsafe_character(s) is None and s == unicodedata.normalize("NFC", s).strip(), (name, payload)
    assert rejected > 3000 and accepted > 20  # the generator reaches both sides
