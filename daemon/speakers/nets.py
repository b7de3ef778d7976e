"""The two speaker networks in PyTorch, written to match the shipped state_dicts, for the ONNX export only.

Imported by `daemon.speakers.provision` when `asrbox models prepare-speakers` converts the weights; nothing at
run time imports torch (inference runs the exported ONNX files on onnxruntime).

CAM++ (3D-Speaker, "zh+en common advanced"): a 2-D convolutional front (FCM: a 3x3 stem, two stages of two
residual blocks that halve the frequency axis, a last 3x3 conv that halves it again: 80 mel bins -> 10 x 32
channels = 320), then a densely connected TDNN: one TDNN layer (k5, stride 2), three dense blocks of 12/24/16
layers (growth 32, bottleneck 128, k3, dilation 1/2/2) whose layers gate their local conv with a
context-aware mask (utterance mean + 100-frame segment means -> two 1x1 convs -> sigmoid), each block followed
by a 1x1 transition that halves the channels, then batchnorm+ReLU, mean+std statistics pooling and a 1x1 dense
layer with a non-affine batchnorm: 192 numbers.

PyanNet (pyannote segmentation-3.0): SincNet on the waveform (instance norm; 40 learnt band-pass pairs of 251
taps, stride 10, |.|, then two 5-tap convs to 60 channels; each stage max-pools by 3, instance-norms and
applies leaky ReLU), a 4-layer bidirectional LSTM (128 per direction), two 128-unit linear layers with leaky
ReLU and a 7-class log-softmax over the powerset of 3 local speakers (at most 2 at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _bn_relu(channels: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("batchnorm", nn.BatchNorm1d(channels))
    seq.add_module("relu", nn.ReLU())
    return seq


class _ResBlock(nn.Module):
    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class _Front(nn.Module):
    """FCM: (B, 80, T) fbank -> (B, 320, T)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(_ResBlock(width, 2), _ResBlock(width, 1))
        self.layer2 = nn.Sequential(_ResBlock(width, 2), _ResBlock(width, 1))
        self.conv2 = nn.Conv2d(width, width, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        y = self.layer2(self.layer1(y))
        y = F.relu(self.bn2(self.conv2(y)))
        return y.flatten(1, 2)


class _MaskedConv(nn.Module):
    """The local conv of a dense layer, gated by a mask from utterance and 100-frame segment context."""

    def __init__(self, inner: int, out: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(inner, out, 3, padding=dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(inner, inner // 2, 1)
        self.linear2 = nn.Conv1d(inner // 2, out, 1)

    @staticmethod
    def _segment_means(x: Tensor, seg: int = 100) -> Tensor:
        # mean over each run of `seg` frames (the last run over the frames it has), spread back over its frames
        pooled = F.avg_pool1d(x, kernel_size=seg, stride=seg, ceil_mode=True)
        spread = pooled.unsqueeze(-1).expand(-1, -1, -1, seg).flatten(2)
        return spread[..., : x.shape[-1]]

    def forward(self, x: Tensor) -> Tensor:
        context = x.mean(-1, keepdim=True) + self._segment_means(x)
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        out: Tensor = self.linear_local(x) * mask
        return out


class _DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int, inner: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(channels)
        self.linear1 = nn.Conv1d(channels, inner, 1, bias=False)
        self.nonlinear2 = _bn_relu(inner)
        self.cam_layer = _MaskedConv(inner, growth, dilation)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, channels: int, growth: int, inner: int, dilation: int) -> None:
        super().__init__(
            {f"tdnnd{i + 1}": _DenseLayer(channels + i * growth, growth, inner, dilation) for i in range(layers)}
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, channels: int, out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.linear = nn.Conv1d(channels, out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
        self.nonlinear = _bn_relu(out)


class _Tdnn(_Transit):
    def forward(self, x: Tensor) -> Tensor:  # conv, then batchnorm+ReLU
        out: Tensor = self.nonlinear(self.linear(x))
        return out


class _Transition(nn.Module):
    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(channels)
        self.linear = nn.Conv1d(channels, out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # batchnorm+ReLU, then conv
        out: Tensor = self.linear(self.nonlinear(x))
        return out


class _Embed(nn.Module):
    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(channels, size, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(size, affine=False))

    def forward(self, stats: Tensor) -> Tensor:
        out: Tensor = self.nonlinear(self.linear(stats.unsqueeze(-1))).squeeze(-1)
        return out


class CamPlusPlus(nn.Module):
    """(B, T, 80) mean-normalised fbank -> (B, 192) speaker embedding."""

    def __init__(self, mels: int = 80, size: int = 192, growth: int = 32) -> None:
        super().__init__()
        self.head = _Front()
        channels = 32 * (mels // 8)
        xv = nn.Sequential()
        xv.add_module("tdnn", _Tdnn(channels, 128, kernel=5, stride=2))
        channels = 128
        for i, (layers, dilation) in enumerate(zip((12, 24, 16), (1, 2, 2), strict=True)):
            xv.add_module(f"block{i + 1}", _DenseBlock(layers, channels, growth, 4 * growth, dilation))
            channels += layers * growth
            xv.add_module(f"transit{i + 1}", _Transition(channels, channels // 2))
            channels //= 2
        xv.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector = xv
        self.dense = _Embed(2 * channels, size)

    def forward(self, feats: Tensor) -> Tensor:
        x = self.head(feats.transpose(1, 2))
        for name, module in self.xvector.named_children():
            if name != "dense":
                x = module(x)
        stats = torch.cat([x.mean(-1), x.std(-1, unbiased=True)], dim=-1)
        out: Tensor = self.dense(stats)
        return out

    def load_weights(self, state: dict[str, Tensor]) -> None:
        renamed = {k.replace("xvector.dense.", "dense."): v for k, v in state.items()}
        self.load_state_dict(renamed, strict=True)


def sinc_filters(state: dict[str, Tensor], min_low_hz: float = 50.0, min_band_hz: float = 50.0) -> Tensor:
    """The 80 fixed band-pass kernels (cos half, then sin half) of SincNet's learnt cut-offs, (80, 1, 251)."""
    prefix = "sincnet.conv1d.0.filterbank."
    low = min_low_hz + state[prefix + "low_hz_"].abs()
    high = torch.clamp(low + min_band_hz + state[prefix + "band_hz_"].abs(), min_low_hz, 8000.0)
    window, n = state[prefix + "window_"], state[prefix + "n_"]
    band = (high - low)[:, 0:1]
    f_low, f_high = low @ n, high @ n
    cos_left = (torch.sin(f_high) - torch.sin(f_low)) / (n / 2) * window
    sin_left = (torch.cos(f_low) - torch.cos(f_high)) / (n / 2) * window
    cos = torch.cat([cos_left, 2 * band, cos_left.flip(1)], dim=1) / (2 * band)
    sin = torch.cat([sin_left, torch.zeros_like(band), -sin_left.flip(1)], dim=1) / (2 * band)
    return torch.cat([cos, sin], dim=0).unsqueeze(1)


class Segmentation(nn.Module):
    """(B, 1, samples) 16 kHz waveform -> (B, frames, 7) powerset log-probabilities (frames ~ 59 per second)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.wav_norm = nn.InstanceNorm1d(1, affine=True)
        self.register_buffer("sinc", torch.zeros(80, 1, 251))
        self.conv1 = nn.Conv1d(80, 60, 5)
        self.conv2 = nn.Conv1d(60, 60, 5)
        self.norms = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])
        self.lstm = nn.LSTM(60, hidden, num_layers=4, bidirectional=True, batch_first=True)
        self.linear = nn.ModuleList([nn.Linear(2 * hidden, hidden), nn.Linear(hidden, hidden)])
        self.classifier = nn.Linear(hidden, 7)

    def forward(self, wave: Tensor) -> Tensor:
        x = self.wav_norm(wave)
        sinc: Tensor = self.sinc  # type: ignore[assignment]
        x = F.conv1d(x, sinc, stride=10).abs()
        for i, norm in enumerate(self.norms):
            if i:
                x = (self.conv1, self.conv2)[i - 1](x)
            x = F.leaky_relu(norm(F.max_pool1d(x, 3, stride=3)))
        x, _ = self.lstm(x.transpose(1, 2))
        for layer in self.linear:
            x = F.leaky_relu(layer(x))
        out: Tensor = F.log_softmax(self.classifier(x), dim=-1)
        return out

    def load_weights(self, state: dict[str, Tensor]) -> None:
        mine: dict[str, Tensor] = {"sinc": sinc_filters(state)}
        names = {"sincnet.wav_norm1d.": "wav_norm.", "sincnet.conv1d.1.": "conv1.", "sincnet.conv1d.2.": "conv2."}
        names |= {f"sincnet.norm1d.{i}.": f"norms.{i}." for i in range(3)}
        for key, value in state.items():
            if key.startswith("sincnet.conv1d.0."):
                continue
            for old, new in names.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            mine[key] = value
        self.load_state_dict(mine, strict=True)


def frame_count(samples: int) -> int:
    """Output frames for a waveform of `samples` (the conv/pool arithmetic of the front)."""
    n = (samples - 251) // 10 + 1
    n = n // 3
    n = (n - 4) // 3
    return (n - 4) // 3
