"""One client connection: `describe` -> `info`; `transcribe`, `audio-start`, `audio-chunk`..., `audio-stop` ->
`transcript-start`, `transcript-chunk`..., `transcript`, `transcript-stop`; `ping` -> `pong`.

Everything here runs on the core's loop and lives only as long as the connection. Bad input gets an `error`
event and the connection is closed; unknown events are ignored (the protocol's rule); a client that leaves
mid-request leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong

from daemon.wyoming.audio import RequestAudio, TooLong
from daemon.wyoming.pcm import SAMPLE_RATE, FormatError
from daemon.wyoming.recognize import RecognitionFailed, final_text, partial_text
from daemon.wyoming.stream import Agreement
from daemon.wyoming.wire import WireError, read_event, write_event

if TYPE_CHECKING:
    from daemon.core.app import App

log = logging.getLogger(__name__)
IDLE_S = 120.0  # a connection that sends nothing for this long is closed
PARTIAL_EVERY_S = 1.0  # a partial decode per second of new audio, when the last one is done
LINGER_S = 1.0  # after an error, input is read and dropped this long before the connection is closed
PARTIALS_UP_TO_S = 25.0  # drafts are one window; a longer request gets its final only


def request_language(data: dict[str, Any]) -> str | None:
    """`transcribe`'s language as a code we use ('en-US' -> 'en'); None (the box's setting) if unusable."""
    value = data.get("language")
    if not isinstance(value, str):
        return None
    code = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


class Session:
    def __init__(self, core: App, info: Event, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.core = core
        self.info = info
        self.reader = reader
        self.writer = writer
        self.language: str | None = None
        self.audio: RequestAudio | None = None
        self.agreement = Agreement(None)
        self._started = False  # transcript-start sent for this request
        self._partial: asyncio.Task[tuple[str, str | None]] | None = None
        self._partial_at = 0  # samples decoded by the last partial

    async def run(self) -> None:
        try:
            while True:
                event = await asyncio.wait_for(read_event(self.reader), IDLE_S)
                if event is None or not await self.handle(event):
                    break
        except TimeoutError:
            log.info("wyoming: closing a connection idle for %.0f s", IDLE_S)
        except WireError as exc:
            await self._refuse(str(exc), exc.code)
        except ConnectionError:
            log.debug("wyoming: client went away")
        finally:
            self._drop_partial()
            self.writer.close()

    async def handle(self, event: Event) -> bool:
        """Answer one event; False closes the connection."""
        kind = event.type
        try:
            if Describe.is_type(kind):
                await self._send(self.info)
            elif Ping.is_type(kind):
                await self._send(Pong(text=Ping.from_event(event).text).event())
            elif Transcribe.is_type(kind):
                self._reset(request_language(event.data))
            elif AudioStart.is_type(kind):
                self._begin(RequestAudio.from_event(event.data))
            elif AudioChunk.is_type(kind):
                await self._chunk(event)
            elif AudioStop.is_type(kind):
                await self._stop()
            else:
                log.debug("wyoming: ignoring a %r event", kind)
        except (FormatError, TooLong) as exc:
            await self._refuse(str(exc), "bad_audio")
            return False
        return True

    def _reset(self, language: str | None) -> None:
        self._drop_partial()
        self.language, self.audio, self._started = language, None, False
        self.agreement = Agreement(language)

    def _begin(self, audio: RequestAudio) -> None:
        self._reset(self.language)
        self.audio = audio

    async def _chunk(self, event: Event) -> None:
        if self.audio is None:  # audio without audio-start: the chunk says its own format
            self._begin(RequestAudio.from_event(event.data))
        assert self.audio is not None
        self.audio.add(event.data, event.payload)
        await self._partials()

    async def _stop(self) -> None:
        audio, language = self.audio, self.language
        self._drop_partial()
        if audio is None:
            log.debug("wyoming: audio-stop without audio")
            await self._final("", language)
            self._reset(None)
            return
        audio.finish()
        began = time.monotonic()
        try:
            text, detected = await final_text(self.core, audio.pcm(), language) if audio.samples else ("", language)
        except RecognitionFailed as exc:
            await self._error(f"transcription failed: {exc}", "transcription_failed")
        else:
            log.info("wyoming: %.1f s of audio transcribed in %.2f s", audio.seconds, time.monotonic() - began)
            log.debug("wyoming transcript: %s", text)
            await self._final(text, detected)
        self._reset(None)

    async def _final(self, text: str, language: str | None) -> None:
        await self._start_transcript(language)
        rest = self.agreement.rest(text)
        if rest:
            await self._send(TranscriptChunk(text=rest).event())
        await self._send(Transcript(text=text, language=language).event())
        await self._send(TranscriptStop().event())

    # ------------------------------------------------------------------ partial previews
    async def _partials(self) -> None:
        """Send what the last partial decode settled; start the next one when enough new audio is in."""
        task = self._partial
        if task is not None and task.done():
            self._partial = None
            if not task.cancelled() and task.exception() is None:
                text, language = task.result()
                log.debug("wyoming partial (%.1f s): %s", self._partial_at / SAMPLE_RATE, text)
                await self._chunk_out(self.agreement.update(text, language), language)
        audio = self.audio
        if (
            self._partial is None
            and audio is not None
            and audio.samples - self._partial_at >= PARTIAL_EVERY_S * SAMPLE_RATE
            and audio.seconds <= PARTIALS_UP_TO_S
        ):
            self._partial_at = audio.samples
            pcm = audio.pcm().copy()
            self._partial = asyncio.create_task(asyncio.to_thread(partial_text, self.core, pcm, self.language))

    async def _chunk_out(self, chunk: str, language: str | None) -> None:
        if chunk:
            await self._start_transcript(language)
            await self._send(TranscriptChunk(text=chunk).event())

    async def _start_transcript(self, language: str | None) -> None:
        if not self._started:
            self._started = True
            await self._send(TranscriptStart(language=language).event())

    def _drop_partial(self) -> None:
        """Forget a partial decode in progress (its thread finishes on its own; the result is dropped)."""
        task, self._partial = self._partial, None
        if task is not None and not task.cancel() and not task.cancelled():
            task.exception()  # retrieved: a failed preview is not worth a warning
        self._partial_at = 0

    # ------------------------------------------------------------------ output
    async def _send(self, event: Event) -> None:
        await write_event(event, self.writer)

    async def _refuse(self, text: str, code: str) -> None:
        """An error event, then a gentle close while the client may still be sending (an oversized chunk): stop
        writing, then read and drop what is in flight for a moment. Closing a socket with unread data sends a
        reset, which can destroy the error event before the client reads it."""
        await self._error(text, code)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError, TimeoutError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            deadline = time.monotonic() + LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(self.reader.read(1 << 16), left):
                    break

    async def _error(self, text: str, code: str) -> None:
        log.warning("wyoming: %s", text)
        with contextlib.suppress(ConnectionError):
            await self._send(Error(text=text, code=code).event())
