"""FunASR engine and FSMN-VAD with the real FunASR classes and loading code, on small random-weight models
built like provisioned folders (scripts/funasr_models.py). Structure is asserted, not words."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, asrbox, eval_clip

from daemon.asr.batching import batches
from daemon.asr.engine import load_engine
from daemon.asr.funasr_engine import FunasrEngine, split_tags
from daemon.audio.decode import decode_file
from daemon.errors import ConfigError
from daemon.settings import AsrSettings, VadSettings
from daemon.transcript import DecodeOptions

sys.path.insert(0, str(ROOT / "scripts"))
torch = pytest.importorskip("torch", reason="the funasr extra is not installed (scripts/test installs it)")
pytest.importorskip("funasr")
import funasr_models  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "sensevoice": funasr_models.build_sensevoice(d / "SenseVoiceSmall"),
        "paraformer": funasr_models.build_paraformer(d / "paraformer-zh"),
        "seaco": funasr_models.build_paraformer(d / "seaco-paraformer-zh", seaco=True),
    }


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [decode_file(eval_clip(c)[0]) for c in ("zh_paddlespeech_zh", "en_jfk", "zh_aishell1_BAC009S0724W0121")]


def test_tags_leave_the_text_and_stay_in_meta() -> None:
    text, meta = split_tags("<|zh|><|HAPPY|><|Speech|><|withitn|>你好。<|Laughter|>")
    assert text == "你好。"
    assert meta == {"language": "zh", "emotion": "HAPPY", "event": "Speech", "itn": "withitn"}
    assert split_tags("no tags") == ("no tags", {})


def test_batches_by_total_seconds() -> None:
    assert batches([10, 50, 20, 5, 70], 60) == [[4], [1], [2, 0, 3]]  # longest first, packed in order
    assert sorted(i for b in batches([1.0] * 9, 4) for i in b) == list(range(9))


@pytest.mark.parametrize("kind", ["sensevoice", "paraformer"])
def test_engine_structure(kind: str, folders: dict[str, Path], clips: list[np.ndarray]) -> None:
    eng = load_engine(AsrSettings(engine="funasr", model=str(folders[kind]), batch_seconds=15))
    assert isinstance(eng, FunasrEngine)
    assert eng.info.name == "funasr" and eng.info.device == "cpu" and eng.info.compute_type == "float32"
    assert eng.info.model.startswith("SenseVoiceSmall" if kind == "sensevoice" else "Paraformer")
    out = eng.transcribe(clips, DecodeOptions(language="zh", hotwords=("钉钉",)))
    assert len(out) == len(clips)
    for t, audio in zip(out, clips, strict=True):
        dur = audio.size / 16000
        assert t.language == "zh" and "<|" not in t.text
        assert t.text and len(t.segments) == 1
        seg = t.segments[0]
        assert 0 <= seg.start <= seg.end <= dur + 1e-3 and seg.text == t.text
    if kind == "sensevoice":
        assert any(t.meta.get("token_timestamps", 0) >= 1 for t in out)
        auto = eng.transcribe(clips[:1], DecodeOptions())
        assert auto[0].language in {"zh", "en", "yue", "ja", "ko"}  # from the model's language tag, or zh
    # (no same-output check: random weights give near-flat posteriors, so threaded float sums flip argmaxes)
    assert eng._model.kwargs["frontend"].dither == 0.0  # but we never add noise ourselves
    eng.close()


def test_seaco_paraformer_takes_hotwords_and_gives_timestamps(
    folders: dict[str, Path], clips: list[np.ndarray]
) -> None:
    eng = load_engine(AsrSettings(engine="funasr", model=str(folders["seaco"])))
    assert eng.info.model.startswith("SeacoParaformer")
    plain = eng.transcribe(clips, DecodeOptions(language="zh"))
    biased = eng.transcribe(clips, DecodeOptions(language="zh", hotwords=("会议", "预算", "邮箱")))
    assert [t.text for t in plain] != [t.text for t in biased]  # the hotword list reached the SeACo decoder
    for t, audio in zip(biased, clips, strict=True):
        assert t.meta["token_timestamps"] >= 1
        assert 0 <= t.segments[0].start < t.segments[0].end <= audio.size / 16000 + 1e-3
        assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", t.text)  # no space between Chinese characters


def test_cuda_out_of_memory_splits_then_falls_back_to_cpu(
    folders: dict[str, Path], clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    eng = FunasrEngine(AsrSettings(engine="funasr", model=str(folders["paraformer"]), batch_seconds=600))
    real = eng._generate
    sizes: list[int] = []
    moved: list[bool] = []

    def generate(batch: list[np.ndarray], options: DecodeOptions) -> Any:
        sizes.append(len(batch))
        if len(batch) > 1 or (batch[0].size > 100_000 and not moved):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch, options)

    monkeypatch.setattr(eng, "_generate", generate)
    monkeypatch.setattr(eng, "_to_cpu", lambda: moved.append(True))
    out = eng.transcribe(clips, DecodeOptions(language="zh"))
    assert len(out) == 3 and all(t.text for t in out)
    assert sizes[0] == 3 and moved == [True]
    assert "splitting" in caplog.text and "moving the model to the CPU" in caplog.text


def test_bad_model_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a local model folder"):
        FunasrEngine(AsrSettings(engine="funasr"))
    with pytest.raises(ConfigError, match="not a folder"):
        FunasrEngine(AsrSettings(engine="funasr", model=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        FunasrEngine(AsrSettings(engine="funasr", model=str(tmp_path)))


def test_transcribe_cli_with_funasr_and_fsmn_vad(folders: dict[str, Path], env: dict[str, str]) -> None:
    wav, _ = eval_clip("en_long_concat_hifitts6097")
    e = {**env, "ASRBOX_ASR__ENGINE": "funasr", "ASRBOX_ASR__MODEL": str(folders["sensevoice"]),
         "ASRBOX_VAD__ENGINE": "fsmn"}  # fmt: skip
    r = asrbox("transcribe", str(wav), "--no-store", "--no-progress", "-f", "json", "-o", "-", env=e)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["engine"]["name"] == "funasr" and doc["segments"]
    assert all(0 <= s["start"] <= s["end"] <= doc["duration_s"] + 0.01 for s in doc["segments"])


def test_fsmn_vad_finds_the_utterances() -> None:
    from daemon.audio.segmenter import segment_stream
    from daemon.audio.vad import load_vad

    wav, _ = eval_clip("en_long_concat_hifitts6097")
    refs = json.loads(wav.with_suffix(".segments.json").read_text())
    audio = decode_file(wav)
    blocks = [audio[i : i + 1600] for i in range(0, audio.size, 1600)]
    got = list(segment_stream(blocks, load_vad("fsmn"), VadSettings(engine="fsmn")))
    assert len(got) == len(refs) == 14
    for u, r in zip(got, refs, strict=True):
        assert abs(u.start_s - r["start_s"]) < 0.6 and abs(u.end_s - r["end_s"]) < 0.8, (u.start_s, u.end_s, r)


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxscript", reason="exporting needs onnx + onnxscript (the funasr extra)")
    folder = funasr_models.build_sensevoice(tmp_path_factory.mktemp("onnx") / "SenseVoiceSmall-onnx")
    return funasr_models.export_onnx(folder)


def test_onnx_front_end_and_logits_match_funasr(onnx_folder: Path, clips: list[np.ndarray]) -> None:
    """Our numpy/kaldi-native-fbank front end equals FunASR's WavFrontend, and the exported graph gives the
    torch model's CTC logits on the same features."""
    from funasr.models.sense_voice.export_meta import export_rebuild_model
    from funasr.utils.load_utils import extract_fbank

    from daemon.asr.onnx_engine import OnnxEngine

    onnx = OnnxEngine(AsrSettings(engine="onnx", model=str(onnx_folder), compute_type="float32"))
    assert onnx.info.model.endswith("model.onnx") and onnx.info.compute_type == "float32"
    torch_eng = FunasrEngine(AsrSettings(engine="funasr", model=str(onnx_folder)))
    frontend = torch_eng._model.kwargs["frontend"]
    audio = clips[0]
    ours = onnx.features(audio)
    theirs, n = extract_fbank([torch.from_numpy(audio)], data_type="sound", frontend=frontend)
    np.testing.assert_allclose(ours, theirs[0, : int(n[0])].numpy(), atol=1e-3)

    model = export_rebuild_model(torch_eng._model.model, max_seq_len=512, device="cpu")
    speech = torch.from_numpy(ours[None])
    args = (speech, torch.tensor([ours.shape[0]], dtype=torch.int32), torch.tensor([3], dtype=torch.int32),
            torch.tensor([15], dtype=torch.int32))  # fmt: skip
    with torch.inference_mode():
        ref_logits, _ = model(*args)
    feed = {"speech": ours[None], "speech_lengths": np.array([ours.shape[0]], np.int32),
            "language": np.array([3], np.int32), "textnorm": np.array([15], np.int32)}  # fmt: skip
    got, _ = onnx._session.run(None, feed)
    np.testing.assert_allclose(got, ref_logits.numpy(), atol=2e-3)


@pytest.mark.parametrize("compute_type", ["auto", "float32"])
def test_onnx_engine_structure(compute_type: str, onnx_folder: Path, clips: list[np.ndarray]) -> None:
    settings = AsrSettings(engine="onnx", model=str(onnx_folder), compute_type=compute_type, batch_seconds=8)
    eng = load_engine(settings)
    # on CPU `auto` takes the int8 model when the folder has one
    assert eng.info.compute_type == ("int8" if compute_type == "auto" else "float32")
    assert eng.info.name == "onnx" and eng.info.device == "cpu"
    out = eng.transcribe(clips, DecodeOptions(language="en"))
    assert len(out) == len(clips)
    for t, audio in zip(out, clips, strict=True):
        assert t.language == "en" and "<|" not in t.text and t.text
        assert 0 <= t.segments[0].start <= t.segments[0].end <= audio.size / 16000 + 1e-3


def test_onnx_engine_refuses_what_it_cannot_run(folders: dict[str, Path], tmp_path: Path) -> None:
    punc = funasr_models.build_ct_punc(tmp_path / "ct-punc")
    with pytest.raises(ConfigError, match="runs SenseVoice and Paraformer exports"):
        load_engine(AsrSettings(engine="onnx", model=str(punc)))
    with pytest.raises(ConfigError, match=r"no model\.onnx"):
        load_engine(AsrSettings(engine="onnx", model=str(folders["sensevoice"])))


def test_onnx_paraformer_matches_torch(folders: dict[str, Path], clips: list[np.ndarray], tmp_path: Path) -> None:
    """Paraformer exported by FunASR (TorchScript exporter) through the onnx engine: the same tokens as the
    torch engine on the same audio (its predictor decides how many; argmax over near-flat random logits may
    differ in a few places, so most tokens must agree)."""
    import shutil
    from difflib import SequenceMatcher

    from daemon.asr.onnx_engine import join_tokens

    folder = tmp_path / "paraformer-onnx"
    shutil.copytree(folders["paraformer"], folder)
    funasr_models.export_onnx(folder)
    eng = load_engine(AsrSettings(engine="onnx", model=str(folder), compute_type="float32"))
    assert eng.info.model.startswith("Paraformer") and eng.info.compute_type == "float32"
    out = eng.transcribe(clips, DecodeOptions(language="zh"))
    ref = FunasrEngine(AsrSettings(engine="funasr", model=str(folder))).transcribe(clips, DecodeOptions(language="zh"))
    for o, r, audio in zip(out, ref, clips, strict=True):
        assert o.text and o.language == "zh" and o.segments[0].end <= audio.size / 16000 + 1e-3
        assert SequenceMatcher(None, o.text.lower(), r.text.lower()).ratio() >= 0.6, (o.text, r.text)
    assert join_tokens(["<s>", "今", "天", "the", "meet@@", "ing", "is", "</s>"]) == "今天the meeting is"
    assert join_tokens(["a", "i", "模", "型"]) == "AI模型"


def test_fetch_models_manifest_list_verify_and_name_lookup(
    folders: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    import subprocess

    dest = tmp_path / "models"
    r = subprocess.run(
        [str(ROOT / "scripts" / "fetch-models"), "--dest", str(dest), "--from-dir", str(folders["sensevoice"]), "sv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads((dest / "sv" / "asrbox-manifest.json").read_text())
    assert {"model.pt", "config.yaml", "am.mvn"} <= set(manifest["files"])
    e = {**env, "ASRBOX_ASR__MODELS_DIR": str(dest)}
    listing = asrbox("models", "list", env=e)
    assert "SenseVoiceSmall" in listing.stdout and "torch" in listing.stdout
    assert asrbox("models", "verify", env=e).returncode == 0
    # the configured model by name, from the models folder
    eng = load_engine(AsrSettings(engine="funasr", model="sv", models_dir=dest))
    assert eng.info.model == "SenseVoiceSmall:sv"
    with (dest / "sv" / "model.pt").open("r+b") as f:  # one flipped byte, same size
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    bad = asrbox("models", "verify", env=e)
    assert bad.returncode == 69 and "model.pt does not match its sha256" in bad.stderr


def test_ct_punc_for_models_without_punctuation(
    folders: dict[str, Path], clips: list[np.ndarray], tmp_path: Path
) -> None:
    punc = funasr_models.build_ct_punc(tmp_path / "ct-punc")
    eng = FunasrEngine(AsrSettings(engine="funasr", model=str(folders["paraformer"]), punc_model=str(punc)))
    out = eng.transcribe(clips[:2], DecodeOptions(language="zh"))
    assert all(t.meta.get("punctuation") == "ct-punc" and "<unk>" not in t.text and t.text for t in out)
    with pytest.raises(ConfigError, match="not a CT-Punc"):
        FunasrEngine(
            AsrSettings(engine="funasr", model=str(folders["paraformer"]), punc_model=str(folders["sensevoice"]))
        )


def test_live_daemon_on_the_onnx_engine_with_fsmn_vad(onnx_folder: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The whole live path (source -> FSMN-VAD -> store -> onnx engine -> outbox -> MQTT) on the exported model."""
    from conftest import Broker, Recorder
    from test_daemon import ROOT_TOPIC, daemon_env, start_daemon

    broker = Broker(tmp_path)
    broker.start()
    rec = Recorder(broker.port, f"{ROOT_TOPIC}/transcript/final")
    wav, _ = eval_clip("en_jfk")
    extra = {"ASRBOX_ASR__ENGINE": "onnx", "ASRBOX_ASR__MODEL": str(onnx_folder), "ASRBOX_VAD__ENGINE": "fsmn"}
    proc = start_daemon(daemon_env(env, broker, **extra), "--source", str(wav), "--exit-at-end", log=tmp_path / "d.log")
    try:
        assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()[-2000:]
        finals = rec.payloads("final")
        assert finals and all(f["engine"]["name"] == "onnx" and f["engine"]["compute_type"] == "int8" for f in finals)
        seqs = [f["seq"] for f in finals]  # exactly once per seq: no repeat, no gap
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        rec.close()
        broker.stop()
