"""Build FunASR model folders of the real classes with random weights, laid out as an operator would provision
them (config.yaml, configuration.json, model.pt, am.mvn, tokens / bpe model). For tests (tiny sizes: seconds to
build, structure only, no words) and for benchmarks (real sizes: the speed and memory of the real architecture).

    python scripts/funasr_models.py sensevoice|paraformer DEST [--size tiny|real]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

# text to train the tokenizers on: a few sentences of Chinese and English of our own
_TEXT = [
    "今天的会议讨论了第三季度的工作计划和预算",
    "我们需要在下周五之前完成项目的测试和部署",
    "请大家把意见发到邮箱里面",
    "the meeting is about the budget for next quarter",
    "please send your comments before friday",
    "speech recognition on a small box in the classroom",
]
_SPECIAL = [
    "<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>",
    "<|HAPPY|>", "<|SAD|>", "<|ANGRY|>", "<|NEUTRAL|>", "<|EMO_UNKNOWN|>",
    "<|Speech|>", "<|BGM|>", "<|Laughter|>", "<|Applause|>", "<|withitn|>", "<|woitn|>",
]  # fmt: skip

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "sensevoice": {
        "tiny": {"output_size": 64, "attention_heads": 2, "linear_units": 128, "num_blocks": 2, "tp_blocks": 1},
        # SenseVoice-Small as published: 50 + 20 SAN-M blocks of 512 (about 234 M parameters with its vocabulary)
        "real": {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50, "tp_blocks": 20},
    },
    "paraformer": {
        "tiny": {"output_size": 64, "attention_heads": 2, "linear_units": 128, "num_blocks": 2, "dec_blocks": 1},
        # Paraformer-large: 50 encoder + 16 decoder blocks of 512 (about 220 M parameters)
        "real": {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50, "dec_blocks": 16},
    },
}

_FRONTEND = {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
             "lfr_m": 7, "lfr_n": 6}  # fmt: skip


def _am_mvn(dim: int) -> str:
    """Kaldi nnet text format as in FunASR's folders: AddShift (-mean) then Rescale (1/std)."""
    shift = " ".join(["-8.0"] * dim)
    scale = " ".join(["0.25"] * dim)
    return (
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n"
    )


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(d, allow_unicode=True, sort_keys=False))


def build_sensevoice(dest: Path, size: str = "tiny", vocab: int = 600) -> Path:
    import sentencepiece as spm

    dest.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    # plus 420 CJK code points: the model reads token 124 as a fallback, so the vocabulary must be larger
    filler = ["".join(chr(0x4E00 + i * 7 + k) for k in range(7)) for i in range(60)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([*_TEXT * 20, *filler]), model_writer=model, vocab_size=vocab, model_type="unigram",
        user_defined_symbols=_SPECIAL, character_coverage=1.0, hard_vocab_limit=False,
    )  # fmt: skip
    bpe = "chn_jpn_yue_eng_ko_spectok.bpe.model"
    (dest / bpe).write_bytes(model.getvalue())
    enc = SIZES["sensevoice"][size]
    config = {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            **enc, "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
            "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
        },
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {**_FRONTEND, "cmvn_file": None},
    }  # fmt: skip
    (dest / "config.yaml").write_text(_yaml(config), encoding="utf-8")
    (dest / "am.mvn").write_text(_am_mvn(560), encoding="utf-8")
    (dest / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition",
        "model": {"type": "funasr"}, "model_name_in_hub": {"ms": "", "hf": ""},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                            "tokenizer_conf": {"bpemodel": bpe}, "frontend_conf": {"cmvn_file": "am.mvn"}},
    }, indent=2))  # fmt: skip
    _save_random(dest, config, vocab_size=spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size())
    return dest


def _write_tokens(dest: Path) -> list[str]:
    """The sample texts' characters and ASCII words as tokens (<blank> <s> </s> first, <unk> last), written to
    dest/tokens.json (dest is made)."""
    dest.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(_TEXT).replace(" ", "")))
    words = sorted({w for s in _TEXT for w in s.split() if w.isascii()})
    tokens = list(dict.fromkeys(["<blank>", "<s>", "</s>", *chars, *words, "<unk>"]))
    (dest / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    return tokens


def build_paraformer(dest: Path, size: str = "tiny", seaco: bool = False) -> Path:
    """Paraformer; with `seaco`, SeACo-Paraformer (hotword biasing, BiCif timestamps) as paraformer-zh is."""
    tokens = _write_tokens(dest)
    s = SIZES["paraformer"][size]
    config = {
        "model": "Paraformer",
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
                       "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75},
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": s["output_size"], "attention_heads": s["attention_heads"],
            "linear_units": s["linear_units"], "num_blocks": s["num_blocks"], "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True, "kernel_size": 11,
            "sanm_shfit": 0, "selfattention_layer_type": "sanm",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            "attention_heads": s["attention_heads"], "linear_units": s["linear_units"], "num_blocks": s["dec_blocks"],
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1, "att_layer_num": s["dec_blocks"], "kernel_size": 11, "sanm_shfit": 0,
        },
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": s["output_size"], "threshold": 1.0, "l_order": 1, "r_order": 1,
                           "tail_threshold": 0.45},
        "frontend": "WavFrontend",
        "frontend_conf": {**_FRONTEND, "cmvn_file": None},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }  # fmt: skip
    if seaco:
        config["model"] = "SeacoParaformer"
        config["model_conf"] |= {"inner_dim": s["output_size"], "bias_encoder_type": "lstm"}
        config["predictor"] = "CifPredictorV3"
        config["predictor_conf"] = {
            "idim": s["output_size"],
            "threshold": 1.0,
            "l_order": 1,
            "r_order": 1,
            "tail_threshold": 0.45,
            "smooth_factor2": 0.25,
            "noise_threshold2": 0.01,
            "upsample_times": 3,
            "use_cif1_cnn": False,
            "upsample_type": "cnn_blstm",
        }
        config["seaco_decoder"] = "ParaformerSANMDecoder"
        config["seaco_decoder_conf"] = {
            "attention_heads": s["attention_heads"], "linear_units": s["linear_units"], "num_blocks": 1,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1, "kernel_size": 21, "sanm_shfit": 0, "use_output_layer": False,
            "wo_input_layer": True,
        }  # fmt: skip
    (dest / "config.yaml").write_text(_yaml(config), encoding="utf-8")
    (dest / "am.mvn").write_text(_am_mvn(560), encoding="utf-8")
    (dest / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                            "tokenizer_conf": {"token_list": "tokens.json"}, "frontend_conf": {"cmvn_file": "am.mvn"}},
    }, indent=2))  # fmt: skip
    _save_random(dest, config, vocab_size=len(tokens))
    return dest


def build_ct_punc(dest: Path) -> Path:
    """A tiny CT-Transformer punctuation model (FunASR's CT-Punc class), characters as tokens."""
    tokens = _write_tokens(dest)
    punc = ["<unk>", "_", "，", "。", "？", "、"]
    config = {
        "model": "CTTransformer",
        "model_conf": {"ignore_id": 0, "embed_unit": 32, "att_unit": 32, "dropout_rate": 0.1, "punc_list": punc,
                       "punc_weight": [1.0] * len(punc), "sentence_end_id": 3},
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": 32, "output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True, "kernel_size": 11,
            "sanm_shfit": 0, "selfattention_layer_type": "sanm", "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }  # fmt: skip
    (dest / "config.yaml").write_text(_yaml(config), encoding="utf-8")
    _save_random(dest, config, vocab_size=len(tokens), input_size=None)
    return dest


def _save_random(dest: Path, config: dict[str, Any], vocab_size: int, input_size: int | None = 560) -> None:
    """Instantiate the real model class from the config and save its (seeded random) weights as model.pt."""
    import funasr  # noqa: F401  (registers the classes)
    import torch
    from funasr.register import tables

    torch.manual_seed(0)
    cls = tables.model_classes.get(config["model"])
    kwargs = {**config.get("model_conf", {}), **{k: v for k, v in config.items() if k != "model_conf"}}
    extra = {"input_size": input_size} if input_size else {}
    model = cls(**kwargs, vocab_size=vocab_size, **extra)
    torch.save(model.state_dict(), dest / "model.pt")


def export_onnx(folder: Path, quantize: bool = True) -> Path:
    """FunASR's own ONNX export of the folder's model (model.onnx), plus onnxruntime's dynamic int8
    quantisation (model_quant.onnx), as FunASR publishes its ONNX folders."""
    import contextlib
    import functools
    import sys

    import torch

    with contextlib.redirect_stdout(sys.stderr):
        from funasr import AutoModel

        model = AutoModel(model=str(folder), device="cpu", disable_update=True, log_level="ERROR")
        try:
            model.export(type="onnx", quantize=False)
        except Exception:  # torch.export cannot trace Paraformer's CIF predictor: use the TorchScript exporter
            export = torch.onnx.export
            torch.onnx.export = functools.partial(export, dynamo=False)  # type: ignore[assignment]
            try:
                model.export(type="onnx", quantize=False)
            finally:
                torch.onnx.export = export
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(folder / "model.onnx"), str(folder / "model_quant.onnx"), weight_type=QuantType.QInt8)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("sensevoice", "paraformer"))
    ap.add_argument("dest")
    ap.add_argument("--size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--onnx", action="store_true", help="also export model.onnx and model_quant.onnx")
    a = ap.parse_args()
    build = build_sensevoice if a.kind == "sensevoice" else build_paraformer
    folder = build(Path(a.dest), a.size)
    if a.onnx:
        export_onnx(folder)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
