"""Streaming transcripts (`transcript-start`, `transcript-chunk`..., `transcript`, `transcript-stop`).

Chunks are appended by clients, so only text that cannot change is sent: the words (characters, for languages
written without spaces) on which two successive partial decodes agree. The final `transcript` is authoritative:
the chunks join into it up to case and punctuation (drafts are greedy and the final has its punctuation); when it
does not continue the chunks sent (the final changed an agreed word), no more chunks are sent.
"""

from __future__ import annotations

import unicodedata

from daemon.lang import NO_SPACE_LANGUAGES


def tokens(text: str, language: str | None) -> list[str]:
    return list(text.replace(" ", "")) if language in NO_SPACE_LANGUAGES else text.split()


def join(words: list[str], language: str | None) -> str:
    return "".join(words) if language in NO_SPACE_LANGUAGES else " ".join(words)


class Agreement:
    """Local agreement of successive hypotheses; `sent` is the text already sent as chunks."""

    def __init__(self, language: str | None) -> None:
        self.language = language
        self.sent = ""
        self._sent_words: list[str] = []
        self._previous: list[str] = []

    def update(self, hypothesis: str, language: str | None) -> str:
        """The new chunk to send ('' = none) after this partial hypothesis (in `language`, when the request
        did not name one)."""
        if self.language is None:
            self.language = language
        words = tokens(hypothesis, self.language)
        agreed = _common_prefix(self._previous, words)
        self._previous = words
        if len(agreed) <= len(self._sent_words) or agreed[: len(self._sent_words)] != self._sent_words:
            return ""
        return self._send(agreed)

    def _send(self, agreed: list[str]) -> str:
        new = join(agreed[len(self._sent_words) :], self.language)
        chunk = new if not self.sent or self.language in NO_SPACE_LANGUAGES else " " + new
        self._sent_words = agreed
        self.sent += chunk
        return chunk

    def rest(self, final: str) -> str:
        """The last chunk: the final's words after those already sent, when the final continues them (compared
        without case and punctuation, which drafts lack); '' when a sent word changed."""
        if not self.sent:
            return final
        words = tokens(final, self.language)
        end = _continues(words, self._sent_words)
        if end is None:
            return ""
        rest = join(words[end:], self.language)
        return " " + rest if rest and self.language not in NO_SPACE_LANGUAGES else rest


def _bare(word: str) -> str:
    return "".join(c for c in word.lower() if not unicodedata.category(c).startswith("P"))


def _continues(words: list[str], sent: list[str]) -> int | None:
    """The index in `words` just after the words matching `sent` (punctuation-only words skipped), or None."""
    i = 0
    for want in (_bare(w) for w in sent):
        if not want:
            continue
        while i < len(words) and not _bare(words[i]):
            i += 1
        if i == len(words) or _bare(words[i]) != want:
            return None
        i += 1
    return i


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return b[:n]
