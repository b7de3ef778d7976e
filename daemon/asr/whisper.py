"""Whisper on CTranslate2 (faster-whisper's model, feature extractor and tokenizer), decoded in batches.

Why not `WhisperModel.transcribe()` as is: for the short chunks a VAD produces it encodes each 30 s window
twice (once to detect the language, once to decode) and decodes one window at a time. Here each window is
encoded once, the language is read from that encoder output, and the windows of a batch are decoded
together (beam search, then a deterministic fallback for the windows that fail Whisper's quality checks).

Deterministic: the same audio with the same settings gives the same text, whatever else is in the batch and
whatever was decoded before. Whisper's own fallback re-decodes a failing window by sampling at rising
temperatures; CTranslate2 samples from a per-thread generator seeded once (`set_random_seed` after the first
sample has no effect), so neither a per-window seed nor a fixed call order is possible, and the same file gave
different text on every run. Measured on the eval clips under 0 dB white noise (the windows that fail the
checks there all fail the log-probability check, not the compression one): sampling never produced a passing
result, changed the chosen text in 2 of 3 runs (yue CER 83.9% -> 88.7% / 87.1%) and took 140-180 s for the 5
windows against 0.2 s without it. So a window that fails only the log-probability check keeps its beam-search
result, and a window caught in a repetition loop (compression ratio over the threshold) is decoded again with
beam search under a repetition penalty, then with repeated 4-grams blocked (on 9 looping windows of noisy eval
clips, -4 to -8 dB, this removed or shortened the loop in all 9).

Word times (`DecodeOptions.words`, asked for by the file path when speakers are labelled): after the windows are
decoded, CTranslate2's `align` (cross-attention, as faster-whisper's `word_timestamps`) times the text tokens of
each window's segments, one call per language over the batch; words are split as Whisper's tokenizer does
(spaces, or Unicode characters for Chinese and Japanese) and punctuation is joined to its word. The text and
segment times do not change. Measured on the eval clips (CPU, base int8, same windows): +5.2% CPU for English
(22 clips), +5.7% for Chinese (11 clips).
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from daemon.asr.models import resolve_whisper_model
from daemon.audio.decode import SAMPLE_RATE
from daemon.errors import ConfigError, ModelError
from daemon.lang import CJK_LANGUAGES, HAN, KANA, NO_SPACE_LANGUAGES
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Segment, Transcript, Word, join_texts

_CJK_CHAR = re.compile(f"[{KANA}{HAN}]")  # kana too: Japanese prompts
log = logging.getLogger(__name__)

WINDOW_S = 30
WINDOW = WINDOW_S * SAMPLE_RATE
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
MAX_INITIAL_TIMESTAMP_S = 1.0
# A window's language is taken over from its group when the window alone is this unsure.
GROUP_LANGUAGE_MIN_PROB = 0.8
# Draft decoding (partial results) encodes only the audio plus this much padding instead of the full 30 s
# window: about 3x cheaper on a CPU, a little less accurate; the final always uses the full window.
DRAFT_PAD_FRAMES = 100
# Languages for which the short window is not good enough for a final. Measured on ../shared/eval, one clip
# at a time, greedy: Chinese CER 27.9% on the full window vs 39.8% on the short one; English WER 5.6% vs 5.3%.
FULL_WINDOW_LANGUAGES = NO_SPACE_LANGUAGES
# Language detection on the short window is less sure; below this, the full window decides.
SHORT_WINDOW_MIN_LANGUAGE_PROB = 0.9
SHORT_WINDOW_HINT_PROB = 0.5  # ... unless it agrees with the language recent speech was in
# Word times (DecodeOptions.words): cross-attention alignment as in faster-whisper's word_timestamps.
TOKENS_PER_SECOND = 50  # encoder frames per second
ALIGN_MEDIAN_FILTER = 7
# Punctuation that Whisper's tokens give as a word of its own: joined to the word before (closing) or after
# (opening), as faster-whisper does, so that a comma never stands alone.
CLOSING_PUNCTUATION = frozenset(".,!?:;)]}%\"'”’。，！？：；、）」』】》…")
OPENING_PUNCTUATION = frozenset("([{¿¡\"'“‘（「『【《-")


@dataclass(frozen=True)
class _Attempt:
    """One decoding pass (beam search, deterministic) over the windows still failing the quality checks."""

    name: str
    kwargs: dict[str, Any]
    loops_only: bool = False  # only for windows whose best result so far is over the compression threshold


# The fallback for windows caught in a repetition loop (see the module docstring).
FALLBACK_ATTEMPTS = (
    _Attempt("repetition penalty", {"repetition_penalty": 1.1}, loops_only=True),
    _Attempt("no repeated 4-grams", {"repetition_penalty": 1.1, "no_repeat_ngram_size": 4}, loops_only=True),
)


_Parts = list[tuple[Segment, list[int]]]  # a window's segments, each with its text tokens


def _spread(parts: _Parts, words: list[tuple[Word, int]]) -> _Parts:
    """The window's words handed to its segments in token order (a word goes with its first token); no words
    (the alignment did not cover the tokens): the segments as they are."""
    if not words:
        return parts
    firsts = np.cumsum([0] + [n for _, n in words[:-1]])  # index of each word's first token
    ends = np.cumsum([len(toks) for _, toks in parts])
    owner = np.searchsorted(ends, firsts, side="right")
    return [
        (replace(seg, words=tuple(w for (w, _), o in zip(words, owner, strict=True) if o == k)), toks)
        for k, (seg, toks) in enumerate(parts)
    ]


@dataclass(frozen=True)
class _Windows:
    """The windows of one decoding batch once encoded: what every attempt needs."""

    enc: np.ndarray[Any, Any]  # encoder output, (n, frames, d_model)
    langs: list[tuple[str, float]]
    toks: list[Any]
    prompts: list[list[int]]
    durations: list[float]
    max_length: int


@dataclass(frozen=True)
class _Candidate:
    """One window's decoding result and Whisper's quality measures of it."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression: float

    @classmethod
    def of(cls, result: Any, tok: Any) -> _Candidate:
        tokens = list(result.sequences_ids[0])
        avg_lp = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = tok.decode([t for t in tokens if t < tok.eot]).strip()
        return cls(tokens, avg_lp, float(result.no_speech_prob), compression_ratio(text))

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD

    @property
    def passes(self) -> bool:
        return self.silent or (
            self.compression <= COMPRESSION_RATIO_THRESHOLD and self.avg_logprob >= LOG_PROB_THRESHOLD
        )


class _Best:
    """Whisper's choice over the attempts: the first result that passes the quality checks; if none does, the
    best (by average log-probability) of those under the compression-ratio threshold, else of all."""

    def __init__(self, n: int) -> None:
        self.passed: list[_Candidate | None] = [None] * n
        self.below: list[_Candidate | None] = [None] * n
        self.any: list[_Candidate | None] = [None] * n

    def offer(self, i: int, cand: _Candidate) -> bool:
        """Record window `i`'s result; True when it passes (the window is done)."""
        if cand.passes:
            self.passed[i] = cand
            return True
        below, anyres = self.below[i], self.any[i]
        if cand.compression <= COMPRESSION_RATIO_THRESHOLD and (below is None or cand.avg_logprob > below.avg_logprob):
            self.below[i] = cand
        if anyres is None or cand.avg_logprob > anyres.avg_logprob:
            self.any[i] = cand
        return False

    def looping(self, i: int) -> bool:
        """Window `i` has no result under the compression-ratio threshold yet."""
        return self.below[i] is None

    def chosen(self, i: int) -> _Candidate | None:
        return self.passed[i] or self.below[i] or self.any[i]


def _shifted(s: Segment, off: float) -> Segment:
    words = tuple(Word(w.start + off, w.end + off, w.text) for w in s.words)
    return Segment(s.start + off, s.end + off, s.text, words)


def _done(results: list[Transcript | None]) -> list[Transcript]:
    out = [r for r in results if r is not None]
    assert len(out) == len(results), "a window was left undecoded"
    return out


def pick_device(requested: str, cuda_devices: int) -> str:
    """`auto` -> cuda when a CUDA device is usable, else cpu; `cuda` without one is a config error."""
    if requested == "cuda" and cuda_devices == 0:
        raise ConfigError("config error: asr.device: 'cuda' but no usable CUDA device (use 'auto' or 'cpu')")
    if requested == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    return requested


def pick_compute_type(requested: str, device: str) -> str:
    if requested != "auto":
        return requested
    return "float16" if device == "cuda" else "int8"


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _punctuation(text: str, marks: frozenset[str]) -> bool:
    t = text.strip()
    return bool(t) and all(c in marks for c in t)


def merge_punctuation(words: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
    """Punctuation-only words joined to their neighbour (closing marks to the word before, opening marks to the
    word after); the count of tokens follows the text."""
    out: list[tuple[Word, int]] = []
    pending: tuple[Word, int] | None = None  # opening marks waiting for their word
    for w, n in words:
        if pending is not None:
            w, n = replace(w, start=pending[0].start, text=pending[0].text + w.text.lstrip()), n + pending[1]
            pending = None
        closing = _punctuation(w.text, CLOSING_PUNCTUATION)
        # a quote opens after a space (' "'), else closes
        if _punctuation(w.text, OPENING_PUNCTUATION) and (not closing or w.text[:1].isspace()):
            pending = (w, n)
        elif out and closing:
            prev, m = out[-1]
            out[-1] = (replace(prev, text=prev.text + w.text.strip()), m + n)
        else:
            out.append((w, n))
    if pending is not None:
        out.append(pending)
    return out


def word_times(tok: Any, tokens: list[int], result: Any, duration: float) -> list[tuple[Word, int]]:
    """The words of `tokens` (text tokens only) with their times from CTranslate2's alignment `result`, each
    with its number of tokens (faster-whisper's `find_alignment`, times clipped to the window)."""
    words, word_tokens = tok.split_to_word_tokens([*tokens, tok.eot])
    if len(word_tokens) <= 1 or not result.alignments:
        return []
    text_idx = np.array([p[0] for p in result.alignments])
    time_idx = np.array([p[1] for p in result.alignments])
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = np.minimum(time_idx[jumps] / TOKENS_PER_SECOND, duration)
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    if bounds[-1] >= jump_times.size:  # the alignment did not cover every token
        return []
    out = []
    for text, wt, a, b in zip(words[:-1], word_tokens[:-1], bounds[:-1], bounds[1:], strict=True):
        start = round(float(jump_times[a]), 2)
        out.append((Word(start, round(max(float(jump_times[b]), start), 2), text), len(wt)))
    return merge_punctuation(out)


class WhisperEngine:
    def __init__(self, settings: AsrSettings) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        model = resolve_whisper_model(settings.model, settings.cache_dir)
        try:
            cuda = ctranslate2.get_cuda_device_count()
        except Exception:  # a broken CUDA install must not stop a CPU box
            cuda = 0
        device = pick_device(settings.device, cuda)
        if settings.device == "auto" and device == "cpu":
            log.info("no CUDA device found: running Whisper on the CPU")
        compute_type = pick_compute_type(settings.compute_type, device)
        threads = settings.threads or (os.cpu_count() or 1)
        try:
            self._model = WhisperModel(
                str(model.path),
                device=device,
                compute_type=compute_type,
                cpu_threads=threads if device == "cpu" else 0,
                local_files_only=True,
            )
        except ValueError as exc:  # e.g. a compute type the device does not support
            raise ConfigError(f"config error: asr.compute_type: {exc}") from None
        except RuntimeError as exc:
            raise ModelError(f"cannot load the Whisper model from {model.path}: {exc}") from None
        self._ct2 = self._model.model
        self._features = self._model.feature_extractor
        self._tokenizers: dict[str, Any] = {}
        self.batch_size = settings.batch_size
        self.beam_size = settings.beam_size
        label = f"{model.name}-{compute_type}"
        self.info = EngineInfo("whisper", label, device, compute_type)
        self._multilingual = bool(self._ct2.is_multilingual)
        self._precision = 0.02  # seconds per timestamp token
        log.info("Whisper model %s loaded on %s (%s, %d threads)", model.path, device, compute_type, threads)

    def close(self) -> None:
        self._tokenizers.clear()

    # ------------------------------------------------------------------ helpers
    def _tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            from faster_whisper.tokenizer import Tokenizer

            tok = Tokenizer(
                self._model.hf_tokenizer,
                self._multilingual,
                task="transcribe",
                language=language if self._multilingual else "en",
            )
            self._tokenizers[language] = tok
        return tok

    def _prompt(self, tok: Any, language: str, hotwords: Sequence[str]) -> list[int]:
        """Hotwords as Whisper's previous-text prompt, only those written in the window's script: a Chinese
        term in the prompt of English speech (or the reverse) pushes Whisper to mix scripts and hallucinate
        (measured on the eval set: garbage output and twice the decode time)."""
        cjk = language in CJK_LANGUAGES
        terms = [t for t in hotwords if bool(_CJK_CHAR.search(t)) == cjk]
        prompt: list[int] = []
        if terms:
            text = "、".join(terms) + "。" if cjk else " " + ", ".join(terms) + "."
            words = tok.encode(text)[: self._model.max_length // 2 - 1]
            prompt = [tok.sot_prev, *words]
        return [*prompt, *tok.sot_sequence]

    def _suppress(self, tok: Any) -> list[int]:
        base = set(tok.non_speech_tokens)
        base.update({tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm, tok.no_speech})
        return sorted(base)

    def _mel(self, audio: Audio, short: bool = False) -> np.ndarray[Any, Any]:
        """Log-mel features padded to the 30 s window; `short`: only the audio plus 1 s (draft quality)."""
        feats = self._features(audio)[..., :-1]
        frames = self._features.nb_max_frames
        if short:
            frames = min(frames, (feats.shape[-1] + DRAFT_PAD_FRAMES + 1) // 2 * 2)
        if feats.shape[-1] >= frames:
            return np.ascontiguousarray(feats[..., :frames], dtype=np.float32)
        out = np.zeros((feats.shape[0], frames), dtype=np.float32)
        out[:, : feats.shape[-1]] = feats
        return out

    # ------------------------------------------------------------------ API
    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        # Split chunks longer than one window; the engine is fed <= 30 s chunks by the segmenter, this is
        # only a guard for direct callers.
        windows: list[tuple[int, float, Audio]] = []  # (chunk index, offset s, audio)
        for i, audio in enumerate(audios):
            if audio.size <= WINDOW:
                windows.append((i, 0.0, audio))
            else:
                for off in range(0, audio.size, WINDOW):
                    windows.append((i, off / SAMPLE_RATE, audio[off : off + WINDOW]))
        groups = options.groups
        results: list[Transcript] = []
        for start in range(0, len(windows), self.batch_size):
            part = windows[start : start + self.batch_size]
            part_groups = [groups[w[0]] if groups else -1 - w[0] for w in part]
            batch = [w[2] for w in part]
            if options.short_first and not options.draft:
                results.extend(self._cascade(batch, part_groups, options))
            else:
                results.extend(_done(self._decode_batch(batch, part_groups, options)))
        # merge windows back into chunks
        merged: list[list[tuple[float, Transcript]]] = [[] for _ in audios]
        for (i, offset, _), res in zip(windows, results, strict=True):
            merged[i].append((offset, res))
        return [self._merge(parts) for parts in merged]

    def _merge(self, parts: list[tuple[float, Transcript]]) -> Transcript:
        if len(parts) == 1 and parts[0][0] == 0.0:
            return parts[0][1]
        segs = tuple(_shifted(s, off) for off, t in parts for s in t.segments)
        first = parts[0][1]
        return Transcript(
            text=join_texts([t.text for _, t in parts], first.language),
            language=first.language,
            language_prob=first.language_prob,
            segments=segs,
            avg_logprob=float(np.mean([t.avg_logprob for _, t in parts])),
            no_speech_prob=min(t.no_speech_prob for _, t in parts),
            temperature=max(t.temperature for _, t in parts),
        )

    def _languages(self, encoder_output: Any, groups: list[int], forced: str | None) -> list[tuple[str, float]]:
        if forced:
            return [(forced, 1.0)] * len(groups)
        if not self._multilingual:
            return [("en", 1.0)] * len(groups)
        detected = self._ct2.detect_language(encoder_output)
        per_item = [{tok[2:-2]: prob for tok, prob in d} for d in detected]
        # Windows of one group (a file) vote, weighted by probability; an unsure window follows its group.
        votes: dict[int, dict[str, float]] = {}
        for g, probs in zip(groups, per_item, strict=True):
            acc = votes.setdefault(g, {})
            for lang, p in probs.items():
                acc[lang] = acc.get(lang, 0.0) + p
        out = []
        for g, probs in zip(groups, per_item, strict=True):
            lang, prob = max(probs.items(), key=lambda kv: kv[1])
            if prob < GROUP_LANGUAGE_MIN_PROB:
                group_lang = max(votes[g].items(), key=lambda kv: kv[1])[0]
                lang, prob = group_lang, probs.get(group_lang, prob)
            out.append((lang, prob))
        return out

    def _cascade(self, audios: list[Audio], groups: list[int], options: DecodeOptions) -> list[Transcript]:
        """Decode on the short window first (about 3x cheaper to encode). Windows in a language that needs the
        full window, and windows whose result fails Whisper's quality checks or is empty, are decoded again on
        the full 30 s window with the usual fallback."""
        first = self._decode_batch(
            audios, groups, replace(options, draft=True, fallback=False), skip_languages=FULL_WINDOW_LANGUAGES
        )
        redo = [
            i
            for i, t in enumerate(first)
            if t is None
            or not t.text
            or not t.meta.get("closed")
            or (options.language is None and t.language_prob < self._min_language_prob(t.language, options))
            or t.avg_logprob < LOG_PROB_THRESHOLD
            or compression_ratio(t.text) > COMPRESSION_RATIO_THRESHOLD
        ]
        if redo:
            again = self._decode_batch([audios[i] for i in redo], [groups[i] for i in redo], options)
            for i, t in zip(redo, again, strict=True):
                first[i] = t
        return _done(first)

    @staticmethod
    def _min_language_prob(language: str, options: DecodeOptions) -> float:
        return SHORT_WINDOW_HINT_PROB if language == options.language_hint else SHORT_WINDOW_MIN_LANGUAGE_PROB

    def _decode_batch(
        self,
        audios: list[Audio],
        groups: list[int],
        options: DecodeOptions,
        skip_languages: frozenset[str] = frozenset(),
    ) -> list[Transcript | None]:
        """Encode, detect the language, decode with Whisper's fallback. Windows detected in `skip_languages` are
        not decoded (None)."""
        win = self._prepare(audios, groups, options)
        n = len(audios)
        best = _Best(n)
        todo = [i for i in range(n) if win.langs[i][0] not in skip_languages]
        for attempt in self._attempts(options):
            todo = [i for i in todo if not attempt.loops_only or best.looping(i)]
            if not todo:
                break
            if attempt.loops_only:
                log.debug("%d of %d windows fall back to beam search with %s", len(todo), n, attempt.name)
            todo = sorted(i for i, cand in self._generate(win, todo, attempt) if not best.offer(i, cand))
        chosen = [best.chosen(i) for i in range(n)]
        parts = [self._segments(c.tokens, win.toks[i], win.durations[i]) if c else [] for i, c in enumerate(chosen)]
        if options.words:
            parts = self._with_words(win, chosen, parts)
        return [self._transcript(win, i, chosen[i], parts[i]) for i in range(n)]

    def _encode(self, audios: list[Audio], draft: bool) -> np.ndarray[Any, Any]:
        """The encoder output of each window, as one (n, frames, d_model) array."""
        import ctranslate2

        all_mels = [self._mel(a, draft) for a in audios]
        frames = max(m.shape[-1] for m in all_mels)
        all_mels = [m if m.shape[-1] == frames else np.pad(m, ((0, 0), (0, frames - m.shape[-1]))) for m in all_mels]
        # On a CPU, encoding windows one by one is faster per window than a batch (measured: 0.44 s vs
        # 0.62 s per window at batch 8 on 2 cores); decoding in a batch is much faster. On CUDA, batch both.
        step = len(audios) if self.info.device == "cuda" else 1
        parts = []
        for k in range(0, len(audios), step):
            mels = np.stack(all_mels[k : k + step])
            parts.append(np.array(self._ct2.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True)))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _prepare(self, audios: list[Audio], groups: list[int], options: DecodeOptions) -> _Windows:
        """Encode the windows, read their languages, build their prompts."""
        import ctranslate2

        enc = self._encode(audios, options.draft)
        langs = self._languages(ctranslate2.StorageView.from_array(enc), groups, options.language)
        toks = [self._tokenizer(lang) for lang, _ in langs]
        prompts = [self._prompt(t, lang, options.hotwords) for t, (lang, _) in zip(toks, langs, strict=True)]
        durations = [a.size / SAMPLE_RATE for a in audios]
        max_length = self._model.max_length
        if options.draft:  # bound a draft's cost: about 8 tokens a second is more than speech has
            max_length = min(max_length, max(len(p) for p in prompts) + int(max(durations) * 8) + 10)
        return _Windows(enc, langs, toks, prompts, durations, max_length)

    def _attempts(self, options: DecodeOptions) -> list[_Attempt]:
        """The decoding attempts in order: beam search, then (with `fallback`) the loop-breaking ones."""
        beam = {"beam_size": options.beam_size or self.beam_size}
        first = _Attempt("beam search", beam)
        if not options.fallback:
            return [first]
        return [first, *(replace(a, kwargs={**beam, **a.kwargs}) for a in FALLBACK_ATTEMPTS)]

    def _generate(self, win: _Windows, todo: list[int], attempt: _Attempt) -> list[tuple[int, _Candidate]]:
        """Decode the windows `todo` once with `attempt`'s settings; one call per language (the prompts of one
        call must share their suppress list)."""
        import ctranslate2

        by_lang: dict[str, list[int]] = {}
        for i in todo:
            by_lang.setdefault(win.langs[i][0], []).append(i)
        out: list[tuple[int, _Candidate]] = []
        for lang, items in by_lang.items():
            tok = self._tokenizer(lang)
            res = self._ct2.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(win.enc[items])),
                [win.prompts[i] for i in items],
                length_penalty=1.0,
                max_length=win.max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress(tok),
                max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP_S / self._precision),
                **attempt.kwargs,
            )
            out += [(i, _Candidate.of(r, tok)) for i, r in zip(items, res, strict=True)]
        return out

    def _with_words(self, win: _Windows, chosen: list[_Candidate | None], parts: list[_Parts]) -> list[_Parts]:
        """Each window's segments with their words: one alignment call per language (it takes one start
        sequence) over the text tokens of the segments kept."""
        by_lang: dict[str, list[int]] = {}
        for i, c in enumerate(chosen):
            if c is not None and not c.silent and parts[i]:
                by_lang.setdefault(win.langs[i][0], []).append(i)
        out = list(parts)
        for items in by_lang.values():
            try:
                self._align(win, items, parts, out)
            except Exception as exc:  # word times never cost the text: these windows go without them
                log.debug("word times not aligned: %s", exc, exc_info=True)
        return out

    def _align(self, win: _Windows, items: list[int], parts: list[_Parts], out: list[_Parts]) -> None:
        """Word times for windows `items` (one language) into `out`."""
        import ctranslate2

        tok = win.toks[items[0]]
        texts = [[t for _, toks in parts[i] for t in toks] for i in items]
        frames = [min(round(win.durations[i] * 100), win.enc.shape[1] * 2) for i in items]
        res = self._ct2.align(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(win.enc[items])),
            tok.sot_sequence,
            texts,
            frames,
            median_filter_width=ALIGN_MEDIAN_FILTER,
        )
        for i, text, r in zip(items, texts, res, strict=True):
            out[i] = _spread(parts[i], word_times(tok, text, r, win.durations[i]))

    def _transcript(self, win: _Windows, i: int, chosen: _Candidate | None, parts: _Parts) -> Transcript | None:
        """Window `i`'s transcript from its chosen decoding (None: not decoded)."""
        if chosen is None:
            return None
        lang, prob = win.langs[i]
        tok = win.toks[i]
        segs = () if chosen.silent else tuple(seg for seg, _ in parts)
        return Transcript(
            text=join_texts([s.text for s in segs], lang),
            language=lang,
            language_prob=round(float(prob), 4),
            segments=segs,
            avg_logprob=round(float(chosen.avg_logprob), 4),
            no_speech_prob=round(chosen.no_speech_prob, 4),
            # the decoder closed its last segment with a timestamp (it did not run into a length limit)
            meta={"closed": bool(chosen.tokens) and chosen.tokens[-1] >= tok.timestamp_begin},
        )

    def _segments(self, tokens: list[int], tok: Any, duration: float) -> _Parts:
        """Cut the token stream at Whisper's timestamp tokens into timed segments, each with its text tokens."""
        ts_begin = tok.timestamp_begin
        segs: _Parts = []
        cur: list[int] = []
        start: float | None = None
        last_end = 0.0

        def close(end: float) -> None:  # the text tokens in `cur` as a segment ending at `end` (never before it starts)
            text = tok.decode(cur).strip()
            s = start if start is not None else last_end
            if text:
                segs.append((Segment(round(s, 2), round(max(end, s), 2), text), list(cur)))

        for t in tokens:
            if t >= ts_begin:
                time = min((t - ts_begin) * self._precision, duration)
                if cur:
                    close(time)
                    cur, start, last_end = [], None, time
                else:
                    start = time
            elif t < tok.eot:
                cur.append(t)
        if cur:
            close(duration)
        return segs
