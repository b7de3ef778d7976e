"""ONNX engine (onnxruntime, no torch): SenseVoice exported to ONNX, int8 on a Mini PC, CUDA where
`onnxruntime-gpu` is installed instead of `onnxruntime` (the two share the module name).

Folder: the model's provisioned folder with `model.onnx` (and/or `model_quant.onnx`, preferred on CPU when
`compute_type` is `auto` or `int8`), `am.mvn`, `config.yaml` and the SentencePiece model (`*.bpe.model`).
The front end is ours, written to match FunASR's WavFrontend: Kaldi fbank (80 mels, 25/10 ms, Hamming, no
dither) on the int16 scale, low frame rate stacking (7 frames every 6, three copies of the first frame in
front), CMVN from am.mvn. Decoding is CTC greedy; SenseVoice's tags go to metadata as in the torch engine.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.asr.batching import in_batches
from daemon.asr.funasr_engine import LANGUAGE_TAGS, split_tags
from daemon.asr.provisioned import model_folder, model_kind
from daemon.audio.decode import SAMPLE_RATE
from daemon.audio.fbank import MELS, read_cmvn
from daemon.audio.fbank import features as fbank_features
from daemon.errors import ConfigError, ModelError
from daemon.settings import AsrSettings
from daemon.transcript import Audio, DecodeOptions, EngineInfo, Segment, Transcript

log = logging.getLogger(__name__)

LFR_M, LFR_N = 7, 6
LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
TEXTNORM_IDS = {"withitn": 14, "woitn": 15}
QUERY_FRAMES = 4  # language, emotion, event, text-norm positions SenseVoice puts before the speech
FRAME_S = 0.06  # one LFR frame


def lfr(feats: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Stack 7 frames every 6 (FunASR's apply_lfr): (T, 80) -> (ceil(T / 6), 560)."""
    t = feats.shape[0]
    pad = (LFR_M - 1) // 2
    padded = np.concatenate([np.repeat(feats[:1], pad, axis=0), feats])
    n = -(-t // LFR_N)
    out = np.empty((n, LFR_M * feats.shape[1]), dtype=np.float32)
    for i in range(n):
        window = padded[i * LFR_N : i * LFR_N + LFR_M]
        if window.shape[0] < LFR_M:
            window = np.concatenate([window, np.repeat(padded[-1:], LFR_M - window.shape[0], axis=0)])
        out[i] = window.reshape(-1)
    return out


SPECIAL_TOKENS = {"<blank>", "<s>", "</s>", "<unk>", "<sos/eos>"}


def join_tokens(tokens: list[str]) -> str:
    """Paraformer tokens to text as FunASR writes it: Chinese characters run together, English words are
    spaced, `@@` marks a word piece that continues into the next token, spelled-out letters form one upper-case
    acronym ("y y t" -> "YYT")."""
    out = ""
    glue = True
    letter = False
    for tok in tokens:
        if tok in SPECIAL_TOKENS:
            continue
        piece = tok.removesuffix("@@")
        single = len(piece) == 1 and piece.isascii() and piece.isalpha()
        if single:
            piece = piece.upper()
        if not glue and not (single and letter) and piece.isascii() and out and out[-1].isascii():
            out += " "
        out += piece
        glue = tok.endswith("@@")
        letter = single
    return out.strip()


class OnnxEngine:
    def __init__(self, settings: AsrSettings) -> None:
        folder = model_folder(settings, "onnx")
        self.kind = model_kind(folder)
        if not self.kind.startswith("SenseVoice") and self.kind != "Paraformer":
            raise ConfigError(
                f"config error: asr.engine = 'onnx' runs SenseVoice and Paraformer exports; {folder} is {self.kind}"
            )
        self.sensevoice = self.kind.startswith("SenseVoice")
        import onnxruntime as ort

        available = ort.get_available_providers()
        cuda = "CUDAExecutionProvider" in available if settings.device == "auto" else settings.device == "cuda"
        if cuda and "CUDAExecutionProvider" not in available:
            raise ConfigError("config error: asr.device = 'cuda' needs onnxruntime-gpu (CUDAExecutionProvider)")
        quant = folder / "model_quant.onnx"
        plain = folder / "model.onnx"
        use_quant = quant.is_file() and (
            not plain.is_file() or (not cuda and settings.compute_type in ("auto", "int8"))
        )
        path = quant if use_quant else plain
        if not path.is_file():
            raise ConfigError(f"config error: asr.model: {folder} has no model.onnx or model_quant.onnx")
        opts = ort.SessionOptions()
        if settings.threads:
            opts.intra_op_num_threads = settings.threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {path}: {exc}") from None
        self._shift, self._scale = read_cmvn(folder / "am.mvn")
        self._sp = self._tokenizer(folder) if self.sensevoice else None
        self._tokens = None if self.sensevoice else self._token_list(folder)
        self.settings = settings
        self._lock = threading.Lock()
        device = "cuda" if cuda else "cpu"
        self.info = EngineInfo("onnx", f"{self.kind}:{folder.name}/{path.name}", device,
                               "int8" if use_quant else "float32")  # fmt: skip
        log.info("ONNX %s loaded from %s (%s)", self.kind, path, ", ".join(self._session.get_providers()))

    @staticmethod
    def _tokenizer(folder: Path) -> Any:
        import sentencepiece as spm

        meta = folder / "configuration.json"
        name = None
        if meta.is_file():
            name = json.loads(meta.read_text()).get("file_path_metas", {}).get("tokenizer_conf", {}).get("bpemodel")
        candidates = [folder / name] if name else sorted(folder.glob("*.bpe.model"))
        if not candidates or not candidates[0].is_file():
            raise ConfigError(f"config error: asr.model: {folder} has no SentencePiece model (*.bpe.model)")
        return spm.SentencePieceProcessor(model_file=str(candidates[0]))

    @staticmethod
    def _token_list(folder: Path) -> list[str]:
        if (folder / "tokens.json").is_file():
            return [str(t) for t in json.loads((folder / "tokens.json").read_text(encoding="utf-8"))]
        if (folder / "tokens.txt").is_file():
            return [
                line.split()[0] for line in (folder / "tokens.txt").read_text(encoding="utf-8").splitlines() if line
            ]
        raise ConfigError(f"config error: asr.model: {folder} has no tokens.json or tokens.txt")

    def features(self, audio: Audio) -> npt.NDArray[np.float32]:
        feats = fbank_features(audio)
        if feats.shape[0] == 0:
            return np.zeros((0, LFR_M * MELS), dtype=np.float32)
        return ((lfr(feats) + self._shift) * self._scale).astype(np.float32)

    def transcribe(self, audios: Sequence[Audio], options: DecodeOptions) -> list[Transcript]:
        with self._lock:
            return in_batches(audios, self.settings.batch_seconds, lambda batch: self._run(batch, options))

    def _run(self, batch: list[Audio], options: DecodeOptions) -> list[Transcript]:
        feats = [self.features(a) for a in batch]
        lengths = np.array([max(1, f.shape[0]) for f in feats], dtype=np.int32)
        speech = np.zeros((len(batch), int(lengths.max()), LFR_M * MELS), dtype=np.float32)
        for i, f in enumerate(feats):
            speech[i, : f.shape[0]] = f
        lang = options.language or (self.settings.language if self.settings.language != "auto" else None)
        if not self.sensevoice:
            return self._paraformer(batch, speech, lengths, lang)
        lid = LANGUAGE_IDS.get(lang or "auto", 0)
        textnorm = TEXTNORM_IDS["withitn" if self.settings.use_itn else "woitn"]
        logits, out_lens = self._session.run(
            ["ctc_logits", "encoder_out_lens"],
            {
                "speech": speech,
                "speech_lengths": lengths,
                "language": np.full(len(batch), lid, dtype=np.int32),
                "textnorm": np.full(len(batch), textnorm, dtype=np.int32),
            },
        )
        sp: Any = self._sp
        results = []
        for i, audio in enumerate(batch):
            ids = np.asarray(logits[i, : int(out_lens[i])]).argmax(axis=-1)
            keep = np.concatenate([[True], ids[1:] != ids[:-1]]) & (ids != 0)  # CTC: collapse, drop blanks
            frames = np.nonzero(keep)[0]
            text, meta = split_tags(str(sp.decode([int(t) for t in ids[keep]])))
            heard = meta.get("language") if meta.get("language") in LANGUAGE_TAGS - {"nospeech"} else None
            dur = audio.size / SAMPLE_RATE
            speech_frames = frames[frames >= QUERY_FRAMES] - QUERY_FRAMES
            start = float(speech_frames[0]) * FRAME_S if speech_frames.size else 0.0
            end = float(speech_frames[-1] + 1) * FRAME_S if speech_frames.size else dur
            start, end = min(start, dur), min(max(end, start), dur)
            segs = (Segment(round(start, 3), round(end, 3), text),) if text else ()
            results.append(Transcript(text=text, language=lang or heard or "zh", language_prob=1.0, segments=segs,
                                      meta=meta))  # fmt: skip
        return results

    def _paraformer(
        self, batch: list[Audio], speech: npt.NDArray[np.float32], lengths: npt.NDArray[np.int32], lang: str | None
    ) -> list[Transcript]:
        """Paraformer's export: logits for as many tokens as its predictor fired (`token_num`); argmax each."""
        assert self._tokens is not None
        logits, token_num = self._session.run(["logits", "token_num"], {"speech": speech, "speech_lengths": lengths})
        out = []
        for i, audio in enumerate(batch):
            ids = np.asarray(logits[i, : int(token_num[i])]).argmax(axis=-1)
            text = join_tokens([self._tokens[int(t)] for t in ids if int(t) < len(self._tokens)])
            dur = audio.size / SAMPLE_RATE
            segs = (Segment(0.0, round(dur, 3), text),) if text else ()
            out.append(Transcript(text=text, language=lang or "zh", language_prob=1.0, segments=segs))
        return out

    def close(self) -> None:
        self._session = None
