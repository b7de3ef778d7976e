"""The remote engine (`asr.engine = "remote"`): each utterance or file chunk goes as a 16 kHz WAV to an
OpenAI-compatible server (`POST {url}/v1/audio/transcriptions`): another asrbox, FunASR's `funasr-server`,
speaches, ... No model is loaded here; VAD, the text pipeline, the store and MQTT stay on the box.

Two kinds of failure, kept apart because the loop treats them differently:

- `ServerUnavailable`: the server cannot be reached, times out, is overloaded (429, 502-504), refuses our key
  (401/403) or has no such endpoint (404). None of it is the audio's fault: the live queue holds (the
  utterance stays pending, its attempt is not counted) and tries again later.
- any other exception (400/413/415/422, a 500 while the server still answers `GET /v1/models`, a reply that
  is not a transcription): this audio's failure, a counted attempt.

The Bearer key is read from a file once; it is never logged or put on a command line.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import secrets
import ssl
import time
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from daemon.errors import ConfigError
from daemon.lang import HAN, KANA
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Segment, Transcript

log = logging.getLogger(__name__)

PATH = "/v1/audio/transcriptions"
RETRIES = 2  # quick retries of a refused connection / 502-504 inside one call, before the loop holds the queue
BACKOFF_S = (0.5, 1.5)
UNAVAILABLE_STATUS = frozenset({401, 403, 404, 408, 429, 502, 503, 504})
MAX_REPLY = 16 * 1024 * 1024
WAIT_SLICE_S = 5.0  # while a request is out, the caller's `alive` is called this often
# OpenAI's verbose_json names the language ("english"); asrbox and FunASR give the code
LANGUAGE_NAMES = {
    "english": "en", "chinese": "zh", "mandarin": "zh", "cantonese": "yue", "japanese": "ja", "korean": "ko",
    "german": "de", "french": "fr", "spanish": "es", "russian": "ru", "arabic": "ar", "italian": "it",
    "portuguese": "pt", "dutch": "nl", "turkish": "tr", "polish": "pl", "vietnamese": "vi", "thai": "th",
    "indonesian": "id", "hindi": "hi", "ukrainian": "uk", "swedish": "sv", "czech": "cs", "greek": "el",
}  # fmt: skip
_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile(f"[{KANA}]")


class ServerUnavailable(RuntimeError):
    """The server could not give an answer (down, timed out, overloaded, refusing the key): not the audio's fault."""


class RemoteRefused(RuntimeError):
    """The server refused this audio (4xx) or answered something that is not a transcription."""


@dataclass(frozen=True)
class ServerState:
    """What `state` and diagnostics report about the server."""

    url: str
    reachable: bool | None  # None: not asked yet
    since: str  # when `reachable` last changed (UTC, ISO 8601)
    error: str | None = None  # the last reason it was unreachable
    last_ok: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "since": self.since,
            "error": self.error,
            "last_ok": self.last_ok,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def wav_bytes(audio: Audio, rate: int = 16000) -> bytes:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def multipart(fields: dict[str, str], wav: bytes) -> tuple[bytes, str]:
    """The form body and its content type: text fields, then the audio as `file` (audio.wav)."""
    boundary = "asrbox-" + secrets.token_hex(12)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    body = b"".join([*parts, head.encode(), wav, f"\r\n--{boundary}--\r\n".encode()])
    return body, f"multipart/form-data; boundary={boundary}"


def read_key(settings: AsrSettings) -> str | None:
    path = settings.remote.api_key_file
    if path is None:
        return None
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config error: asr.remote.api_key_file: cannot read {path}: {exc}") from None
    if not key or any(c.isspace() for c in key):
        raise ConfigError(f"config error: asr.remote.api_key_file: {path} must hold one key (no spaces)")
    return key


class RemoteEngine:
    def __init__(self, settings: AsrSettings) -> None:
        r = settings.remote
        self.url = r.url
        self.model = r.model
        self.timeout_s = r.timeout_s
        self.partials = r.partials
        self._key = read_key(settings)
        parts = urlsplit(r.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._verbose = True  # verbose_json until the server refuses it
        # the live worker's heartbeat: waiting on a busy server is progress, not a stalled stage
        self.alive: Callable[[], None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        # written only by the thread that transcribes, swapped whole: readers (diagnostics) take the current value
        self.server = ServerState(r.url, None, _now())
        self.info = EngineInfo("remote", r.model, parts.netloc, "remote")

    # ------------------------------------------------------------------ Engine protocol
    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        return [self._one(a, options) for a in audios]

    def close(self) -> None:
        """No connection is held open between requests; a request still out is left to its timeout."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ one request
    def _one(self, audio: Audio, options: DecodeOptions) -> Transcript:
        if options.draft and self.server.reachable is False:
            raise ServerUnavailable("a partial is not sent while the server is unreachable (finals probe it)")
        wav = wav_bytes(audio)
        fields = self._fields(options)
        retries = 0 if options.draft else RETRIES
        for attempt in range(retries + 1):
            try:
                reply = self._ask(fields, wav)
            except ServerUnavailable as exc:
                self._unreachable(str(exc))
                if attempt == retries or "timed out" in str(exc):
                    raise
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                continue
            self._reachable()
            return self._transcript(reply, options, audio.size / 16000)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fields(self, options: DecodeOptions) -> dict[str, str]:
        fields = {"model": self.model, "response_format": "verbose_json" if self._verbose else "json"}
        if options.language:
            fields["language"] = options.language
        if options.hotwords:
            fields["prompt"] = ", ".join(options.hotwords)
        return fields

    def _ask(self, fields: dict[str, str], wav: bytes) -> dict[str, Any]:
        status, data = self._post(fields, wav)
        if status in (400, 422) and fields["response_format"] == "verbose_json":
            plain = {**fields, "response_format": "json"}
            status2, data2 = self._post(plain, wav)
            if status2 == 200:  # the server does not do verbose_json: plain json from now on
                log.info("the ASR server does not answer verbose_json; using json (no segment times)")
                self._verbose = False
                fields.update(plain)
                status, data = status2, data2
        if status == 200:
            return _json_reply(data)
        message = _error_message(data)
        if status in UNAVAILABLE_STATUS:
            raise ServerUnavailable(f"HTTP {status}: {message}")
        if status >= 500 and not self._answers():
            raise ServerUnavailable(f"HTTP {status} and GET /v1/models fails: {message}")
        raise RemoteRefused(f"the ASR server refused the audio: HTTP {status}: {message}")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "asrbox-remote"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        """One exchange; with `alive` set, it runs on a helper thread while this one calls `alive` every few seconds."""
        if self.alive is None:
            return self._exchange(method, path, body, headers, timeout)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="asr-remote")
        future = self._pool.submit(self._exchange, method, path, body, headers, timeout)
        while True:
            try:
                return future.result(WAIT_SLICE_S)
            except WaitTimeout:
                self.alive()

    def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        conn = self._connection(timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers={**self._headers(), **headers})
            resp = conn.getresponse()
            return resp.status, resp.read(MAX_REPLY)
        except TimeoutError:
            raise ServerUnavailable(f"no answer within {timeout:g} s (timed out)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()

    def _post(self, fields: dict[str, str], wav: bytes) -> tuple[int, bytes]:
        body, ctype = multipart(fields, wav)
        return self._request("POST", PATH, body, {"Content-Type": ctype}, self.timeout_s)

    def _answers(self) -> bool:
        """Whether the server still answers at all (after a 500 for one audio)."""
        try:
            status, _ = self._request("GET", "/v1/models", None, {}, min(self.timeout_s, 5.0))
        except ServerUnavailable:
            return False
        return status < 500

    # ------------------------------------------------------------------ reply -> Transcript
    def _transcript(self, reply: dict[str, Any], options: DecodeOptions, duration: float) -> Transcript:
        text = str(reply.get("text") or "").strip()
        language = _language(reply.get("language"), options, text)
        segments = tuple(
            Segment(float(s.get("start") or 0.0), float(s.get("end") or duration), str(s.get("text") or "").strip())
            for s in reply.get("segments") or ()
            if isinstance(s, dict)
        )
        if not segments and text:
            segments = (Segment(0.0, round(duration, 3), text),)
        first = reply["segments"][0] if segments and isinstance(reply.get("segments"), list) else {}
        return Transcript(
            text=text,
            language=language,
            language_prob=1.0 if options.language else 0.0,
            segments=segments,
            avg_logprob=_number(first.get("avg_logprob")),
            no_speech_prob=_number(first.get("no_speech_prob")),
        )

    # ------------------------------------------------------------------ server state
    def _reachable(self) -> None:
        s = self.server
        if s.reachable is not True:
            log.info("ASR server %s reachable", self.url)
        since = s.since if s.reachable is True else _now()
        self.server = ServerState(self.url, True, since, None, _now())

    def _unreachable(self, reason: str) -> None:
        s = self.server
        if s.reachable is not False:
            log.warning("ASR server %s unreachable: %s", self.url, reason)
        since = s.since if s.reachable is False else _now()
        self.server = ServerState(self.url, False, since, reason[:300], s.last_ok)


def _json_reply(data: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RemoteRefused("the ASR server's answer is not JSON") from None
    if isinstance(reply, str):  # some servers answer response_format=text-like JSON strings
        reply = {"text": reply}
    if not isinstance(reply, dict) or not isinstance(reply.get("text", ""), str) or "text" not in reply:
        raise RemoteRefused("the ASR server's answer has no text")
    return reply


def _error_message(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return " ".join(text.split())[:200] or "(no body)"
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            err = err.get("message", err)
        return " ".join(str(err).split())[:200]
    return " ".join(str(body).split())[:200]


def _language(value: Any, options: DecodeOptions, text: str) -> str:
    """The caller's language, else the server's (a code or OpenAI's name), else a guess from the script."""
    if options.language:
        return options.language
    if isinstance(value, str) and value.strip():
        v = value.strip().lower()
        v = LANGUAGE_NAMES.get(v, v)
        if re.fullmatch(r"[a-z]{2,3}", v):
            return v
    if options.language_hint:
        return options.language_hint
    if _KANA.search(text):
        return "ja"
    return "zh" if _HAN.search(text) else "en"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
