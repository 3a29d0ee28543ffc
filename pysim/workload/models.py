"""Built-in networks as lists of layers (``pysim.workload.layers``), and their training GEMMs.

- :func:`resnet50`: torchvision ResNet-50 v1.5, exactly (53 convolutions + fc);
- :func:`transformer` with presets :func:`transformer_tiny` (the paper's IWSLT'15
  En-Vi model) and :func:`transformer_base`: the GEMMs of an encoder-decoder
  Transformer (projections, attention matmuls, FFN, vocabulary projection);
- :func:`ncf`: NeuMF (GMF + MLP) for MovieLens-1M with 8 predictive factors.

Only GEMMs are modelled: pooling, normalisation, softmax, activations, residual adds
and embedding lookups are not. What each model contains, and the choices the paper
leaves open, are in docs/layers.md.

:data:`MODELS` maps a model name to a zero-argument builder with the defaults used by
the project; :func:`build_model` looks a name up with a one-line error.
"""
from __future__ import annotations

from typing import Callable, Iterable

from pysim.validate import is_int
from pysim.workload.layers import (PHASES, Conv2d, Gemm, Layer, Linear, MatMul, ShapeError,
                     conv_output_size)


# --------------------------------------------------------------------------- ResNet-50

#: (blocks, bottleneck width, stride of the first block) of layer1..layer4
RESNET50_STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
RESNET_EXPANSION = 4


def _check_positive(model: str, name: str, value) -> int:
    if not is_int(value) or value < 1:
        raise ShapeError(f"model {model!r}: parameter {name!r} must be an integer >= 1, "
                         f"got {value!r}")
    return int(value)


def resnet50(batch: int = 32, image: int = 224, classes: int = 1000) -> list[Layer]:
    """torchvision ResNet-50 (v1.5: the stride is on the 3x3 conv of a bottleneck).

    Layers in forward order, named as in torchvision: ``conv1``, then for each block
    ``layerS.B.conv1``, ``.conv2``, ``.conv3`` and, in block 0 of each stage,
    ``layerS.0.downsample.0``; finally ``fc``. The 3x3/2 max-pool after conv1 (not a
    GEMM) is accounted for in the spatial sizes; the global average pool reduces the
    final feature map to 2048 features. ``conv1`` has ``needs_input_grad=False``.
    """
    for name, value in (("batch", batch), ("image", image), ("classes", classes)):
        _check_positive("resnet50", name, value)
    layers: list[Layer] = []
    conv1 = Conv2d("conv1", batch, 3, 64, image, image, kernel=7, stride=2, padding=3,
                   needs_input_grad=False)
    layers.append(conv1)
    # maxpool 3x3, stride 2, padding 1 (floor mode)
    size = conv_output_size(conv1.out_height, 3, 2, 1, 1)
    channels = 64
    for stage, (blocks, width, first_stride) in enumerate(RESNET50_STAGES, start=1):
        out_channels = width * RESNET_EXPANSION
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            prefix = f"layer{stage}.{block}"
            c1 = Conv2d(f"{prefix}.conv1", batch, channels, width, size, size, kernel=1)
            c2 = Conv2d(f"{prefix}.conv2", batch, width, width, size, size, kernel=3,
                        stride=stride, padding=1)
            c3 = Conv2d(f"{prefix}.conv3", batch, width, out_channels,
                        c2.out_height, c2.out_width, kernel=1)
            layers += [c1, c2, c3]
            if block == 0:  # stride != 1 or channels != out_channels: always in block 0
                layers.append(Conv2d(f"{prefix}.downsample.0", batch, channels,
                                     out_channels, size, size, kernel=1, stride=stride))
            channels, size = out_channels, c3.out_height
    layers.append(Linear("fc", batch, channels, classes))
    return layers


# -------------------------------------------------------------------------- Transformer

def _attention(prefix: str, batch: int, hidden: int, heads: int, q_len: int,
               kv_len: int) -> list[Layer]:
    d = hidden // heads
    return [
        Linear(f"{prefix}.q", batch, hidden, hidden, tokens=q_len),
        Linear(f"{prefix}.k", batch, hidden, hidden, tokens=kv_len),
        Linear(f"{prefix}.v", batch, hidden, hidden, tokens=kv_len),
        MatMul(f"{prefix}.qk", batch * heads, q_len, d, kv_len),   # Q K^T
        MatMul(f"{prefix}.pv", batch * heads, q_len, kv_len, d),   # softmax(..) V
        Linear(f"{prefix}.out", batch, hidden, hidden, tokens=q_len),
    ]


def _ffn(prefix: str, batch: int, hidden: int, filter: int, tokens: int) -> list[Layer]:
    return [Linear(f"{prefix}.fc1", batch, hidden, filter, tokens=tokens),
            Linear(f"{prefix}.fc2", batch, filter, hidden, tokens=tokens)]


def transformer(layers: int = 2, hidden: int = 128, filter: int = 512, heads: int = 4,
                seq_len: int = 64, batch: int = 64, vocab: int = 32768,
                encoder_decoder: bool = True) -> list[Layer]:
    """GEMM layers of a post-2017 "Attention is all you need" Transformer.

    ``layers`` encoder layers (``encoder.L.self_attn.{q,k,v,qk,pv,out}``,
    ``encoder.L.ffn.{fc1,fc2}``) and, if ``encoder_decoder``, as many decoder layers
    (``decoder.L.self_attn.*``, ``decoder.L.cross_attn.*`` whose k and v project the
    encoder output, ``decoder.L.ffn.*``), then ``logits``: hidden -> vocab on every
    target token. Source and target are both ``seq_len`` tokens (padded); attention
    matmuls are per head (``MatMul`` batch = batch * heads, head size hidden/heads),
    and the decoder's causal self-attention is computed in full (masked afterwards).
    Without ``encoder_decoder`` the encoder stack feeds ``logits`` directly.
    """
    model = "transformer"
    for name, value in (("layers", layers), ("hidden", hidden), ("filter", filter),
                        ("heads", heads), ("seq_len", seq_len), ("batch", batch),
                        ("vocab", vocab)):
        _check_positive(model, name, value)
    if hidden % heads:
        raise ShapeError(f"model {model!r}: parameter 'hidden' must be divisible by "
                         f"heads={heads}, got {hidden}")
    if not isinstance(encoder_decoder, bool):
        raise ShapeError(f"model {model!r}: parameter 'encoder_decoder' must be True or "
                         f"False, got {encoder_decoder!r}")
    out: list[Layer] = []
    for i in range(layers):
        out += _attention(f"encoder.{i}.self_attn", batch, hidden, heads, seq_len, seq_len)
        out += _ffn(f"encoder.{i}.ffn", batch, hidden, filter, seq_len)
    if encoder_decoder:
        for i in range(layers):
            out += _attention(f"decoder.{i}.self_attn", batch, hidden, heads, seq_len,
                              seq_len)
            out += _attention(f"decoder.{i}.cross_attn", batch, hidden, heads, seq_len,
                              seq_len)
            out += _ffn(f"decoder.{i}.ffn", batch, hidden, filter, seq_len)
    out.append(Linear("logits", batch, hidden, vocab, tokens=seq_len))
    return out


def transformer_tiny() -> list[Layer]:
    """The paper's Transformer-tiny (IWSLT'15 En-Vi): 2+2 layers, hidden 128, filter 512,
    4 heads (tensor2tensor ``transformer_tiny``); 64 sentences of 64 tokens (4096
    tokens a batch), 32768-entry subword vocabulary."""
    return transformer(layers=2, hidden=128, filter=512, heads=4, seq_len=64, batch=64,
                       vocab=32768)


def transformer_base() -> list[Layer]:
    """Transformer-base: 6+6 layers, hidden 512, filter 2048, 8 heads; 64 sentences of
    64 tokens, 32768-entry vocabulary."""
    return transformer(layers=6, hidden=512, filter=2048, heads=8, seq_len=64, batch=64,
                       vocab=32768)


# --------------------------------------------------------------------------------- NCF

def ncf(factors: int = 8, batch: int = 256, mlp_layers: Iterable[int] | None = None
        ) -> list[Layer]:
    """NeuMF (He et al., 2017) GEMMs for one batch of (user, item) pairs.

    ``mlp_layers`` follows the NCF/MLPerf convention: its first entry is the width of
    the concatenated user+item MLP embeddings, the others the widths of the MLP's
    hidden layers; the default ``(4f, 4f, 2f, f)`` is the paper's "three hidden
    layers, the last one of ``factors`` units, embedding size 2f". Layers:
    ``mlp.0 .. mlp.{n-1}`` and ``predict`` (concat(GMF f, MLP last) -> 1). The GMF
    branch is an elementwise product of two embeddings: no GEMM. Embedding lookups
    are not GEMMs.
    """
    _check_positive("ncf", "factors", factors)
    _check_positive("ncf", "batch", batch)
    if mlp_layers is None:
        mlp_layers = (4 * factors, 4 * factors, 2 * factors, factors)
    widths = list(mlp_layers)
    if len(widths) < 2:
        raise ShapeError(f"model 'ncf': parameter 'mlp_layers' needs at least 2 widths, "
                         f"got {widths!r}")
    for width in widths:
        _check_positive("ncf", "mlp_layers", width)
    out: list[Layer] = [Linear(f"mlp.{i}", batch, a, b)
                        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
    out.append(Linear("predict", batch, factors + widths[-1], 1))
    return out


# ------------------------------------------------------------------------------ helpers

def training_step_gemms(layers: Iterable[Layer], repeat: int = 1) -> list[Gemm]:
    """Forward, dgrad and wgrad GEMMs of every layer, layer by layer (a layer with
    ``needs_input_grad=False`` has no dgrad)."""
    return [g for layer in layers for g in layer.gemms(PHASES, repeat=repeat)]


def forward_gemms(layers: Iterable[Layer]) -> list[Gemm]:
    """Forward GEMMs only (inference)."""
    return [g for layer in layers for g in layer.gemms(("forward",))]


def total_macs(gemms: Iterable[Gemm]) -> int:
    return sum(g.macs for g in gemms)


#: model name -> zero-argument builder with the project's defaults
MODELS: dict[str, Callable[[], list[Layer]]] = {
    "resnet50": resnet50,
    "transformer-tiny": transformer_tiny,
    "transformer-base": transformer_base,
    "ncf": ncf,
}


def build_model(name: str) -> list[Layer]:
    """``MODELS[name]()``; an unknown name raises :class:`ShapeError` (a ``BadInput``)."""
    try:
        builder = MODELS[name]
    except (KeyError, TypeError):
        raise ShapeError(f"unknown model {name!r} (expected one of "
                         f"{', '.join(MODELS)})") from None
    return builder()
