"""Training with every GEMM operand quantized: S2FP8 (pysim's formula, or the hardware
output path's rule) vs FP32 vs plain FP8 (E5M2, E4M3).

Reproduces the shape of Table 1 of Cambier et al. (ICLR 2020) in minutes on a CPU: a
ResNet-8 on scikit-learn's bundled ``load_digits`` (8x8 images, no download), trained
with the quantizers of :mod:`pysim.accuracy.quantize` at the paper's quantization points
(forward: weights and activations of every conv and Linear, first and last layer
included; backward: the incoming gradient, quantized once for dgrad and wgrad). Master
weights, optimizer, BatchNorm, biases and residual adds stay FP32. A second model,
``transformer``, echoes the paper's Transformer row on a generated sequence task
(:func:`marked_token_data`). See docs/training.md.

Import this module only where torch is installed (``pysim.cli.train`` checks first).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from pysim.accuracy.quantize import (
    LABELS, MODES, QUANTIZERS, GradientFlushCounter, NonFiniteTensor, QuantizedConv2d,
    QuantizedLinear)

MODELS = ("resnet8", "mlp", "transformer")
#: each model's task, as the reports name it
DATASETS = {"resnet8": "load_digits", "mlp": "load_digits",
            "transformer": "marked-token sequences"}
#: The fixed stratified split of load_digits' 1797 images: 1437 train, 360 test.
TEST_FRACTION, SPLIT_SEED = 0.2, 0


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the setting that shows the paper's effect
    (issue 13): batch 512 over 1437 images (3 steps per epoch), SGD momentum 0.9,
    lr 0.2 with a cosine schedule per step, weight decay 5e-4, 30 epochs."""

    mode: str = "fp32"
    seed: int = 0
    loss_scale: float | None = None
    model: str = "resnet8"
    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    threads: int = 2
    #: use only the first ``train_subset`` training images (smoke tests); None: all
    train_subset: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r} (choose from {', '.join(MODELS)})")
        if self.loss_scale is not None and not (math.isfinite(self.loss_scale)
                                                and self.loss_scale > 0):
            raise ValueError(f"loss_scale must be finite and > 0, got {self.loss_scale!r}")

    @property
    def label(self) -> str:
        """Table name of the run's format, e.g. "E5M2 + LS 1024"."""
        label = LABELS[self.mode]
        if self.loss_scale is not None:
            label += f" + LS {self.loss_scale:g}"
        return label


@dataclass
class RunResult:
    mode: str
    seed: int
    loss_scale: float | None
    label: str
    model: str
    epochs: int
    #: final test accuracy in percent; None if the loss became NaN/Inf (the paper's "NaN")
    test_accuracy: float | None
    #: mean training loss over the last epoch's steps (None if diverged)
    final_train_loss: float | None
    diverged_epoch: int | None = None
    train_loss: list = field(default_factory=list)       # per epoch
    test_accuracies: list = field(default_factory=list)  # per epoch, percent
    #: layer -> flushed / nonzero incoming-gradient entries over the whole run
    grad_flushed: dict = field(default_factory=dict)
    steps: int = 0
    step_seconds: float = 0.0   # mean wall time of one training step
    seconds: float = 0.0        # whole run, evaluation included

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- data

def load_data(train_subset: int | None = None, model: str = "resnet8"):
    """(x_train, y_train, x_test, y_test) of ``model``'s task as torch tensors.

    ``resnet8`` and ``mlp``: load_digits, images (N, 1, 8, 8) float32 standardized with the
    training set's mean and std. ``transformer``: :func:`marked_token_data`. Labels int64.
    """
    if model == "transformer":
        return marked_token_data(train_subset)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, stratify=digits.target,
        random_state=SPLIT_SEED)
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    mean, std = x_train.mean(), x_train.std()

    def tensor(x):
        return torch.from_numpy(((x - mean) / std)[:, None].astype(np.float32))
    return (tensor(x_train), torch.from_numpy(y_train.astype(np.int64)),
            tensor(x_test), torch.from_numpy(y_test.astype(np.int64)))


#: The generated sequence task of the ``transformer`` model (see marked_token_data).
SEQ_VOCAB, SEQ_LEN, SEQ_TRAIN, SEQ_TEST, SEQ_DATA_SEED = 10, 32, 4096, 1024, 0


def marked_token_data(train_subset: int | None = None):
    """The marked-token task, generated (no download), fixed seed: each sequence holds
    SEQ_LEN tokens drawn uniformly from SEQ_VOCAB, one position (uniform) carries a marker;
    the label is the marked token. Input (N, SEQ_LEN, SEQ_VOCAB + 1) float32: the token's
    one-hot and the marker bit, so the first layer (the embedding) is a GEMM too.

    Why this task: the label is not a linear function of the mean-pooled features of an
    untrained network (the marker adds the same vector whatever the token), so the
    per-token layers must learn to pick the marked token out, and their gradients are
    the small ones (divided by the batch and by the SEQ_LEN pooled positions)."""
    rng = np.random.default_rng(SEQ_DATA_SEED)
    total = SEQ_TRAIN + SEQ_TEST
    tokens = rng.integers(0, SEQ_VOCAB, size=(total, SEQ_LEN))
    marked = rng.integers(0, SEQ_LEN, size=total)
    x = np.zeros((total, SEQ_LEN, SEQ_VOCAB + 1), dtype=np.float32)
    np.put_along_axis(x, tokens[:, :, None], 1.0, axis=2)
    x[np.arange(total), marked, SEQ_VOCAB] = 1.0
    y = tokens[np.arange(total), marked].astype(np.int64)
    x_train, y_train = x[:SEQ_TRAIN], y[:SEQ_TRAIN]
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    return (torch.from_numpy(x_train), torch.from_numpy(y_train),
            torch.from_numpy(x[SEQ_TRAIN:]), torch.from_numpy(y[SEQ_TRAIN:]))


# -------------------------------------------------------------------------- models

class BasicBlock(torch.nn.Module):
    """Two 3x3 convs with BatchNorm; the shortcut zero-pads new channels (He et al.'s
    CIFAR option A, parameter-free, so every GEMM of the block is a quantized conv)."""

    def __init__(self, in_channels, out_channels, make_conv, name):
        super().__init__()
        self.conv_a = make_conv(in_channels, out_channels, f"{name}.a")
        self.bn_a = torch.nn.BatchNorm2d(out_channels)
        self.conv_b = make_conv(out_channels, out_channels, f"{name}.b")
        self.bn_b = torch.nn.BatchNorm2d(out_channels)
        self.extra_channels = out_channels - in_channels

    def forward(self, x):
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        shortcut = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels)) if self.extra_channels else x
        return F.relu(out + shortcut)


class ResNet8(torch.nn.Module):
    """conv 3x3 (1->16), three basic blocks (16, 32, 64 channels), all strides 1, global
    average pool over the 8x8 map, Linear 64->10: 7 convs + 1 Linear, all quantized."""

    WIDTHS = (16, 32, 64)

    def __init__(self, quantize=None, counter=None, classes=10):
        super().__init__()

        def make_conv(cin, cout, name):
            return QuantizedConv2d(cin, cout, 3, quantize=quantize, counter=counter, name=name)
        self.conv1 = make_conv(1, self.WIDTHS[0], "conv1")
        self.bn1 = torch.nn.BatchNorm2d(self.WIDTHS[0])
        widths = (self.WIDTHS[0],) + self.WIDTHS
        self.blocks = torch.nn.Sequential(*[
            BasicBlock(widths[i], widths[i + 1], make_conv, f"block{i + 1}")
            for i in range(len(self.WIDTHS))])
        self.fc = QuantizedLinear(self.WIDTHS[-1], classes, quantize=quantize,
                                  counter=counter, name="fc")

    def forward(self, x):
        out = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(out.mean(dim=(2, 3)))


class MLP(torch.nn.Module):
    """64 -> 256 -> 256 -> 10 with ReLU: a small, fast model (smoke tests, quick looks)."""

    def __init__(self, quantize=None, counter=None, classes=10, hidden=256):
        super().__init__()
        sizes = (64, hidden, hidden, classes)
        self.layers = torch.nn.ModuleList(
            QuantizedLinear(sizes[i], sizes[i + 1], quantize=quantize, counter=counter,
                            name=f"fc{i + 1}") for i in range(len(sizes) - 1))

    def forward(self, x):
        out = x.flatten(1)
        for i, layer in enumerate(self.layers):
            out = layer(out)
            if i < len(self.layers) - 1:
                out = F.relu(out)
        return out


def _per_token(layer: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """``layer`` on every token of ``x`` (..., features): one (tokens x features) GEMM,
    the shape QuantizedLinear's backward (dgrad, wgrad) is written for."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], layer.out_features)


class TransformerBlock(torch.nn.Module):
    """Pre-LayerNorm block: x + attention(LN(x)), then x + MLP(LN(x)). The Q, K, V, output
    and both MLP projections are QuantizedLinear; LayerNorm, the softmax, the score and
    value products (Q K^T, P V) and the residual adds stay FP32."""

    def __init__(self, width, heads, hidden, make_linear, name):
        super().__init__()
        self.heads = heads
        self.norm_attention = torch.nn.LayerNorm(width)
        self.query = make_linear(width, width, f"{name}.q")
        self.key = make_linear(width, width, f"{name}.k")
        self.value = make_linear(width, width, f"{name}.v")
        self.output = make_linear(width, width, f"{name}.o")
        self.norm_mlp = torch.nn.LayerNorm(width)
        self.mlp_in = make_linear(width, hidden, f"{name}.mlp1")
        self.mlp_out = make_linear(hidden, width, f"{name}.mlp2")

    def forward(self, x):
        batch, length, width = x.shape
        h = self.norm_attention(x)

        def split(t):  # (batch, length, width) -> (batch, heads, length, head width)
            return t.reshape(batch, length, self.heads, -1).transpose(1, 2)
        q, k, v = (split(_per_token(p, h)) for p in (self.query, self.key, self.value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        mixed = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
        x = x + _per_token(self.output, mixed)
        return x + _per_token(self.mlp_out, F.relu(_per_token(self.mlp_in, self.norm_mlp(x))))


class Transformer(torch.nn.Module):
    """For the marked-token task: embedding Linear (SEQ_VOCAB + 1 -> width) plus a learned
    position embedding, ``depth`` pre-LN blocks, final LayerNorm, mean pool over the
    SEQ_LEN positions, Linear width -> classes. Every Linear is a QuantizedLinear."""

    def __init__(self, quantize=None, counter=None, classes=SEQ_VOCAB, width=32, heads=2,
                 hidden=64, depth=2):
        super().__init__()

        def make_linear(cin, cout, name):
            return QuantizedLinear(cin, cout, quantize=quantize, counter=counter, name=name)
        self.embed = make_linear(SEQ_VOCAB + 1, width, "embed")
        self.position = torch.nn.Parameter(0.02 * torch.randn(SEQ_LEN, width))
        self.blocks = torch.nn.Sequential(*[
            TransformerBlock(width, heads, hidden, make_linear, f"block{i + 1}")
            for i in range(depth)])
        self.norm = torch.nn.LayerNorm(width)
        self.head = make_linear(width, classes, "head")

    def forward(self, x):
        out = self.blocks(_per_token(self.embed, x) + self.position)
        return self.head(self.norm(out).mean(dim=1))


def build_model(name: str, quantize=None, counter=None) -> torch.nn.Module:
    return {"resnet8": ResNet8, "mlp": MLP, "transformer": Transformer}[name](
        quantize=quantize, counter=counter)


# -------------------------------------------------------------------------- training

def _accuracy(model, x, y, batch_size) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            correct += int((logits.argmax(dim=1) == y[start:start + batch_size]).sum())
    model.train()
    return 100.0 * correct / len(x)


def train_run(config: TrainConfig, data=None, progress=None) -> RunResult:
    """Train one model; deterministic for a given config (same seed, same result).

    ``data``: the tensors of :func:`load_data` (loaded if None). ``progress(epoch,
    train_loss, test_accuracy)`` is called after every epoch. A NaN or Inf loss (or an
    S2FP8 encode of a non-finite tensor) stops the run: ``test_accuracy`` None and
    ``diverged_epoch`` set, as the paper reports "NaN".
    """
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        if data is None:
            data = load_data(config.train_subset, config.model)
        x_train, y_train, x_test, y_test = data
        torch.manual_seed(config.seed)
        shuffle = torch.Generator().manual_seed(config.seed)
        counter = GradientFlushCounter()
        model = build_model(config.model, QUANTIZERS.get(config.mode), counter)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr,
                                    momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs * steps_per_epoch)
        scale = config.loss_scale or 1.0
        result = RunResult(config.mode, config.seed, config.loss_scale, config.label,
                           config.model, config.epochs, None, None)
        step_time = 0.0
        for epoch in range(config.epochs):
            order = torch.randperm(len(x_train), generator=shuffle)
            losses = []
            for first in range(0, len(x_train), config.batch_size):
                batch = order[first:first + config.batch_size]
                step_start = time.perf_counter()
                try:
                    loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
                    if not math.isfinite(loss.item()):
                        raise NonFiniteTensor("loss")
                    optimizer.zero_grad(set_to_none=True)
                    (loss * scale).backward()
                except NonFiniteTensor:
                    result.diverged_epoch = epoch + 1
                    break
                if scale != 1.0:
                    for p in model.parameters():
                        p.grad.div_(scale)
                optimizer.step()
                schedule.step()
                step_time += time.perf_counter() - step_start
                result.steps += 1
                losses.append(loss.item())
            if result.diverged_epoch is not None:
                break
            try:
                accuracy = _accuracy(model, x_test, y_test, config.batch_size)
            except NonFiniteTensor:  # an Inf/NaN weight reached an S2FP8 quantizer
                result.diverged_epoch = epoch + 1
                break
            result.train_loss.append(float(np.mean(losses)))
            result.test_accuracies.append(accuracy)
            if progress is not None:
                progress(epoch + 1, result.train_loss[-1], result.test_accuracies[-1])
        if result.diverged_epoch is None:
            result.test_accuracy = result.test_accuracies[-1]
            result.final_train_loss = result.train_loss[-1]
        result.grad_flushed = counter.fractions()
        result.step_seconds = step_time / max(result.steps, 1)
        result.seconds = time.perf_counter() - start
        return result
    finally:
        torch.set_num_threads(previous_threads)


# -------------------------------------------------------------------------- reports

def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _pct(value) -> str:
    return "NaN" if value is None else f"{value:.1f}"


def group_runs(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    """Runs by table label, in first-seen order."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return groups


def format_table(runs: list[RunResult]) -> str:
    """Accuracy table (one row per format: mean and per-seed test accuracy, final train
    loss, ms per step) and the gradient-flush table (percent of nonzero incoming
    gradient entries quantized to zero, per layer, mean over seeds)."""
    groups = group_runs(runs)
    head = ["format", "test acc %", "per seed", "final train loss", "ms/step"]
    body = []
    for label, group in groups.items():
        per_seed = " / ".join(
            _pct(r.test_accuracy) + (f" (NaN loss, epoch {r.diverged_epoch})"
                                     if r.diverged_epoch else "") for r in group)
        loss = _mean([r.final_train_loss for r in group])
        body.append([label, _pct(_mean([r.test_accuracy for r in group])), per_seed,
                     "NaN" if loss is None else f"{loss:.4f}",
                     f"{1e3 * _mean([r.step_seconds for r in group]):.0f}"])
    lines = _columns(head, body, left=(0, 2))
    layers = list(dict.fromkeys(layer for r in runs for layer in r.grad_flushed))
    if layers:
        lines += ["", "gradient entries flushed to zero (% of nonzero, whole run, mean over "
                      "seeds):"]
        flush_body = []
        for label, group in groups.items():
            if not any(r.grad_flushed for r in group):
                continue
            flush_body.append([label] + [
                f"{100 * _mean([r.grad_flushed.get(layer) for r in group]):.1f}"
                for layer in layers])
        lines += _columns(["format"] + layers, flush_body, left=(0,))
    return "\n".join(lines)


def _columns(head, body, left) -> list[str]:
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in [head] + body]


COLORS = {"FP32": "#4477aa", "S2FP8": "#228833", "S2FP8-HW": "#88cc66", "E5M2": "#ee6677",
          "E4M3": "#ccbb44"}
#: formats with loss scaling (any other label) take these in turn
EXTRA_COLORS = ["#aa3377", "#66ccee", "#bbbbbb", "#000000"]


def to_png(runs: list[RunResult], title: str) -> bytes:
    """Training loss (log) and test accuracy per epoch, one color per format, one line
    per seed."""
    import io
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    extra = iter(EXTRA_COLORS * len(runs))
    for label, group in group_runs(runs).items():
        color = COLORS.get(label) or next(extra)
        for i, run in enumerate(group):
            epochs = np.arange(1, len(run.train_loss) + 1)
            style = "-" if i == 0 else "--"
            name = f"{label} (seed {run.seed})"
            ax_loss.plot(epochs, run.train_loss, style, color=color, label=name)
            ax_acc.plot(epochs, run.test_accuracies, style, color=color, label=name)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (mean cross-entropy, log)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_ylim(0, 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
