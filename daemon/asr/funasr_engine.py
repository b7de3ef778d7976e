"""FunASR engine (torch): SenseVoice-Small, Paraformer (SeACo hotwords where the model has them), Fun-ASR-Nano,
any model folder `funasr.AutoModel` builds, loaded only from a local folder an operator provisioned.

- `asr.model` is the folder (config.yaml + model.pt + tokens/bpe + am.mvn, as published); nothing is fetched.
- Device: `auto` -> CUDA when torch sees one, else CPU. On CUDA the model runs in float16 unless
  `compute_type = "float32"`.
- Batching by total audio seconds (`asr.batch_seconds`), longest first, so one batch's padding stays small.
- CUDA out of memory: the batch is split in half and retried, down to one chunk; one chunk that still does not
  fit moves the model to the CPU for good. Each step logs one line.
- SenseVoice's language / emotion / event / ITN tags are taken out of the text and kept in `meta`.

torch and funasr are imported here only, so `asrbox` starts without them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.asr.batching import in_batches
from daemon.asr.provisioned import model_folder, model_kind, resolve
from daemon.audio.decode import SAMPLE_RATE
from daemon.errors import ConfigError, ModelError
from daemon.lang import HAN
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Segment, Transcript

log = logging.getLogger(__name__)

_TAG = re.compile(r"<\|([^|]*)\|>")
_CJK_GAP = re.compile(f"(?<=[{HAN}]) +(?=[{HAN}])")
_PUNCT = re.compile(r"[，。？！、,.?!;；:：]")
LANGUAGE_TAGS = {"zh", "en", "yue", "ja", "ko", "nospeech"}
EMOTIONS = {"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"}
EVENTS = {"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Event_UNK"}
SEACO = {"SeacoParaformer"}  # models that take a hotword list (SeACo biasing)


def split_tags(text: str) -> tuple[str, dict[str, Any]]:
    """SenseVoice output `<|zh|><|NEUTRAL|><|Speech|><|woitn|>你好` -> ("你好", {language, emotion, event, itn}).
    Every tag is taken out of the text, wherever it is; the first of each kind is kept."""
    meta: dict[str, Any] = {}
    for tag in _TAG.findall(text):
        key = (
            "language" if tag in LANGUAGE_TAGS
            else "emotion" if tag in EMOTIONS
            else "event" if tag in EVENTS
            else "itn" if tag in ("withitn", "woitn")
            else "tags"
        )  # fmt: skip
        if key == "tags":
            meta.setdefault("tags", []).append(tag)
        else:
            meta.setdefault(key, tag)
    return _TAG.sub("", text).strip(), meta


class FunasrEngine:
    def __init__(self, settings: AsrSettings) -> None:
        folder = model_folder(settings, "funasr")
        self.kind = model_kind(folder)
        try:
            # funasr prints notices on stdout; stdout may be a transcript (`transcribe -o -`)
            with contextlib.redirect_stdout(sys.stderr):
                import torch
                from funasr import AutoModel
        except ImportError as exc:
            raise ConfigError(
                f"config error: asr.engine = 'funasr' needs torch and funasr ({exc.name} is missing): "
                "scripts/setup with ASRBOX_EXTRAS=funasr"
            ) from None
        self._torch = torch
        cuda = torch.cuda.is_available() if settings.device == "auto" else settings.device == "cuda"
        if cuda and not torch.cuda.is_available():
            raise ConfigError("config error: asr.device = 'cuda' but torch sees no CUDA device")
        self.device = "cuda:0" if cuda else "cpu"
        self.fp16 = cuda and settings.compute_type in ("auto", "float16")
        if not cuda:
            torch.set_num_threads(settings.threads or max(1, torch.get_num_threads()))
        self.settings = settings
        self.max_batch_s = settings.batch_seconds
        self._lock = threading.Lock()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                self._model = AutoModel(
                model=str(folder), device=self.device, fp16=self.fp16, disable_update=True, disable_pbar=True,
                log_level="ERROR", trust_remote_code=False, ncpu=settings.threads or os.cpu_count() or 1,
                # WavFrontend dithers by default (a training aid); inference reads the audio as it is
                frontend_conf={"dither": 0.0},
            )  # fmt: skip
        except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
            raise ModelError(f"cannot load the FunASR model in {folder}: {exc}") from None
        self._punc = self._load_punc(AutoModel, settings) if settings.punc_model else None
        self.info = EngineInfo("funasr", f"{self.kind}:{folder.name}", "cuda" if cuda else "cpu",
                               "float16" if self.fp16 else "float32")  # fmt: skip
        log.info("FunASR %s loaded from %s on %s (%s)", self.kind, folder, self.device, self.info.compute_type)

    def _load_punc(self, auto_model: Any, settings: AsrSettings) -> Any:
        """CT-Punc for models that write no punctuation (Paraformer); SenseVoice with ITN punctuates itself."""
        folder = Path(resolve(settings.punc_model, settings.models_dir))
        if model_kind(folder) != "CTTransformer":
            raise ConfigError(f"config error: asr.punc_model: {folder} is not a CT-Punc (CTTransformer) model")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return auto_model(
                    model=str(folder), device=self.device, disable_update=True, disable_pbar=True, log_level="ERROR"
                )
        except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
            raise ModelError(f"cannot load the punctuation model in {folder}: {exc}") from None

    def _punctuate(self, text: str) -> str:
        punc: Any = self._punc
        with self._torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
            out = punc.generate(input=text)
        return str(out[0].get("text", text)).replace("<unk>", "") if out else text

    # ------------------------------------------------------------------ Engine
    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        with self._lock:
            return in_batches(audios, self.max_batch_s, lambda batch: self._run(batch, options))

    def close(self) -> None:
        self._model = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    # ------------------------------------------------------------------ batches, OOM
    def _run(self, batch: list[Audio], options: DecodeOptions) -> list[Transcript]:
        try:
            return self._generate(batch, options)
        except Exception as exc:
            if not self._is_oom(exc):
                raise
            seconds = sum(a.size for a in batch) / SAMPLE_RATE
            self._torch.cuda.empty_cache()
            if len(batch) > 1:
                log.warning("CUDA out of memory on a batch of %d (%.0f s of audio): splitting it", len(batch), seconds)
                half = len(batch) // 2
                return self._run(batch[:half], options) + self._run(batch[half:], options)
            log.warning("CUDA out of memory on one chunk of %.0f s: moving the model to the CPU", seconds)
            self._to_cpu()
            return self._generate(batch, options)

    def _is_oom(self, exc: BaseException) -> bool:
        oom = getattr(self._torch.cuda, "OutOfMemoryError", None)
        return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()

    def _to_cpu(self) -> None:
        model = self._model.model
        model.to(self._torch.float32)
        model.to("cpu")
        self._model.kwargs["device"] = "cpu"
        self._model.kwargs["fp16"] = False
        self.device = "cpu"
        self.fp16 = False
        self.info = EngineInfo(self.info.name, self.info.model, "cpu", "float32")

    def _generate(self, batch: list[Audio], options: DecodeOptions) -> list[Transcript]:
        kw: dict[str, Any] = {"batch_size": len(batch), "use_itn": self.settings.use_itn}
        lang = options.language or (self.settings.language if self.settings.language != "auto" else None)
        if self.kind.startswith("SenseVoice"):
            kw["language"] = lang if lang in LANGUAGE_TAGS else "auto"
            kw["output_timestamp"] = True
        if self.kind in SEACO and options.hotwords:
            kw["hotword"] = " ".join(options.hotwords)
        with self._torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
            try:
                results = self._model.generate(input=list(batch), **kw)
            except (IndexError, ValueError) as exc:
                if not kw.get("output_timestamp"):
                    raise
                # FunASR's CTC forced alignment for SenseVoice timestamps fails on some outputs: keep the text
                log.debug("SenseVoice timestamps failed (%s); decoding without them", exc)
                results = self._model.generate(input=list(batch), **{**kw, "output_timestamp": False})
        if len(results) != len(batch):
            raise ModelError(f"FunASR returned {len(results)} results for {len(batch)} chunks")
        out = [self._transcript(r, a, lang) for r, a in zip(results, batch, strict=True)]
        if self._punc is not None:
            out = [self._with_punctuation(t) for t in out]
        return out

    def _with_punctuation(self, t: Transcript) -> Transcript:
        if not t.text or _PUNCT.search(t.text):
            return t  # the model punctuated itself
        text = self._punctuate(t.text)
        segs = tuple(Segment(s.start, s.end, text) for s in t.segments[:1])
        return Transcript(text, t.language, t.language_prob, segs, meta={**t.meta, "punctuation": "ct-punc"})

    def _transcript(self, r: dict[str, Any], audio: Audio, lang: str | None) -> Transcript:
        text, meta = split_tags(str(r.get("text", "")))
        # FunASR separates every token with a space when English is mixed in; Chinese characters never need one
        # (and our pipeline would read such a space as a pause)
        text = _CJK_GAP.sub("", text)
        duration = audio.size / SAMPLE_RATE
        heard = meta.get("language") if meta.get("language") in LANGUAGE_TAGS - {"nospeech"} else None
        language = lang or heard or "zh"  # a language the user set wins over the model's tag
        start, end = 0.0, duration
        stamps = r.get("timestamp")
        if isinstance(stamps, list) and stamps:
            # Paraformer: [[start_ms, end_ms], ...]; SenseVoice: [[token, start_s, end_s], ...]
            first, last = stamps[0], stamps[-1]
            if len(first) == 2:
                start, end = first[0] / 1000.0, last[1] / 1000.0
            elif len(first) == 3:
                start, end = float(first[1]), float(last[2])
            meta["token_timestamps"] = len(stamps)
        start, end = max(0.0, min(start, duration)), max(0.0, min(end, duration))
        segments = (Segment(round(start, 3), round(max(end, start), 3), text),) if text else ()
        return Transcript(text=text, language=language, language_prob=1.0, segments=segments, meta=meta)
