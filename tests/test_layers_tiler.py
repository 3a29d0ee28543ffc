"""Layer -> GEMM lowering, the output-stationary tiler and the built-in models.

GEMM shapes are checked against the matrices that a brute-force numpy implementation
actually multiplies (im2col for convolutions), and the backward formulas are checked
with the adjoint identity <dY, f(X)> = <f^T(dY), X> of the linear maps involved.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pytest

from pysim.cli import BadInput
from pysim.validate import is_int
from pysim.workload.layers import (PHASES, Conv2d, Gemm, Linear, MatMul, ShapeError,
                          conv_output_size)
from pysim.workload.models import (MODELS, build_model, forward_gemms, ncf, resnet50,
                          total_macs, training_step_gemms, transformer,
                          transformer_base, transformer_tiny)
from pysim.perf.arch import ARRAY_DIM_MAX, check_array
from pysim.perf.tiler import gemm_arrays, tile_counts

RNG = np.random.default_rng(20200114)


# ------------------------------------------------------ tiling oracle (tile by tile)

@dataclass(frozen=True)
class Tile:
    """One output tile: rows ``row0 : row0+rows`` and columns ``col0 : col0+cols`` of
    the result, accumulated over the full ``k``."""

    row0: int
    col0: int
    rows: int
    cols: int
    k: int


def _check_dim(name: str, value) -> int:
    if not is_int(value) or value < 1:
        raise ShapeError(f"GEMM dimension {name} must be an integer >= 1, got {value!r}")
    return int(value)


def tiles(m: int, k: int, n: int, rows: int, cols: int) -> Iterator[Tile]:
    """The oracle: every output tile of an ``(m, k, n)`` GEMM, lazily, row-major over the
    output, written the obvious way (two loops); the library's vectorized counts and the
    RTL benches' beat order are checked against it."""
    m, k, n = _check_dim("M", m), _check_dim("K", k), _check_dim("N", n)
    rows, cols = check_array(rows, cols)

    def generate():
        for row0 in range(0, m, rows):
            for col0 in range(0, n, cols):
                yield Tile(row0, col0, min(rows, m - row0), min(cols, n - col0), k)

    return generate()


def tile_count(m: int, n: int, rows: int, cols: int) -> int:
    """Scalar Python-int count, ceil(m / rows) * ceil(n / cols)."""
    m, n = _check_dim("M", m), _check_dim("N", n)
    rows, cols = check_array(rows, cols)
    return -(-m // rows) * -(-n // cols)


def by_phase(gemms):
    return {g.phase: g for g in gemms}


# ------------------------------------------------------------------ numpy references

def pad_input(x, ph, pw):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def im2col(x, conv: Conv2d):
    """X_col per group: (groups, B*Ho*Wo, Cin/g*kh*kw), columns ordered (c, i, j)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    ho, wo, g = conv.out_height, conv.out_width, conv.groups
    b, cin = x.shape[:2]
    xp = pad_input(x, ph, pw)
    # patches[b, c, i, j, y, x] = xp[b, c, y*sh + i*dh, x*sw + j*dw]
    rows = (np.arange(ho)[None, :] * sh + np.arange(kh)[:, None] * dh)      # (kh, ho)
    cols = (np.arange(wo)[None, :] * sw + np.arange(kw)[:, None] * dw)      # (kw, wo)
    patches = xp[:, :, rows[:, None, :, None], cols[None, :, None, :]]      # b c kh kw ho wo
    patches = patches.reshape(b, g, cin // g, kh, kw, ho, wo)
    return patches.transpose(1, 0, 5, 6, 2, 3, 4).reshape(g, b * ho * wo, -1)


def col2im(cols, conv: Conv2d):
    """Adjoint of im2col: scatter-add (groups, P, Kc) back into (B, Cin, H, W)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    ho, wo, g = conv.out_height, conv.out_width, conv.groups
    b, cin, h, w = conv.batch, conv.in_channels, conv.height, conv.width
    patches = cols.reshape(g, b, ho, wo, cin // g, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3)
    patches = patches.reshape(b, cin, kh, kw, ho, wo)
    xp = np.zeros((b, cin, h + 2 * ph, w + 2 * pw))
    for i, j in itertools.product(range(kh), range(kw)):
        xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
           j * dw: j * dw + sw * (wo - 1) + 1: sw] += patches[:, :, i, j]
    return xp[:, :, ph: ph + h, pw: pw + w]


def weight_cols(weight, groups):
    """W (Cout, Cin/g, kh, kw) -> W_col per group (groups, Cin/g*kh*kw, Cout/g)."""
    cout = weight.shape[0]
    return weight.reshape(groups, cout // groups, -1).transpose(0, 2, 1)


def direct_conv(x, weight, conv: Conv2d):
    """Direct convolution (a sum over kernel taps), independent of im2col."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel, conv.stride, conv.padding, conv.dilation
    ho, wo, g = conv.out_height, conv.out_width, conv.groups
    b, cin = x.shape[:2]
    cout = weight.shape[0]
    xp = pad_input(x, ph, pw)
    y = np.zeros((b, cout, ho, wo))
    cg, og = cin // g, cout // g
    for gi, i, j in itertools.product(range(g), range(kh), range(kw)):
        window = xp[:, gi * cg:(gi + 1) * cg,
                    i * dh: i * dh + sh * (ho - 1) + 1: sh,
                    j * dw: j * dw + sw * (wo - 1) + 1: sw]
        y[:, gi * og:(gi + 1) * og] += np.einsum("bcyx,oc->boyx", window,
                                                 weight[gi * og:(gi + 1) * og, :, i, j])
    return y


CONV_CASES = [
    dict(batch=2, in_channels=3, out_channels=4, height=5, width=6, kernel=3),
    dict(batch=1, in_channels=4, out_channels=6, height=7, width=5, kernel=(3, 2),
         stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    dict(batch=2, in_channels=6, out_channels=3, height=9, width=8, kernel=3,
         stride=2, padding=2, dilation=2, groups=3),
    dict(batch=3, in_channels=2, out_channels=5, height=4, width=4, kernel=1, stride=3),
    dict(batch=1, in_channels=4, out_channels=4, height=6, width=6, kernel=3,
         padding=1, groups=4),   # depthwise
    dict(batch=2, in_channels=3, out_channels=2, height=3, width=3, kernel=3),  # 1x1 out
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_im2col_forward_and_gradients(case):
    conv = Conv2d("conv", **case)
    g = conv.groups
    x = RNG.standard_normal((conv.batch, conv.in_channels, conv.height, conv.width))
    w = RNG.standard_normal((conv.out_channels, conv.in_channels // g) + conv.kernel)
    dy = RNG.standard_normal(conv.output_shape)
    shapes = by_phase(conv.gemms())

    # forward: Y = X_col @ W_col per group == direct convolution
    x_col, w_col = im2col(x, conv), weight_cols(w, g)
    fwd = shapes["forward"]
    assert fwd.count == g == x_col.shape[0]
    assert x_col.shape[1:] == (fwd.m, fwd.k) and w_col.shape[1:] == (fwd.k, fwd.n)
    y_col = x_col @ w_col                                     # (g, P, Cout/g)
    b, cout, ho, wo = conv.output_shape
    y = y_col.reshape(g, b, ho, wo, cout // g).transpose(1, 0, 4, 2, 3).reshape(b, cout, ho, wo)
    np.testing.assert_allclose(y, direct_conv(x, w, conv), rtol=1e-12, atol=1e-12)

    # dgrad: dX_col = dY @ W_col^T, then col2im; adjoint identity in X
    dy_mat = dy.reshape(b, g, cout // g, ho, wo).transpose(1, 0, 3, 4, 2).reshape(g, -1, cout // g)
    dg = shapes["dgrad"]
    assert dy_mat.shape[1:] == (dg.m, dg.k) and w_col.transpose(0, 2, 1).shape[1:] == (dg.k, dg.n)
    dx = col2im(dy_mat @ w_col.transpose(0, 2, 1), conv)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.vdot(dy, direct_conv(x, w, conv)), np.vdot(dx, x),
                               rtol=1e-10)

    # wgrad: dW_col = X_col^T @ dY; adjoint identity in W
    wg = shapes["wgrad"]
    x_col_t = x_col.transpose(0, 2, 1)
    assert x_col_t.shape[1:] == (wg.m, wg.k) and dy_mat.shape[1:] == (wg.k, wg.n)
    dw_col = x_col_t @ dy_mat
    dw = dw_col.transpose(0, 2, 1).reshape(w.shape)
    np.testing.assert_allclose(np.vdot(dy, direct_conv(x, w, conv)), np.vdot(dw, w),
                               rtol=1e-10)
    # every phase does the same number of MACs
    assert fwd.macs == dg.macs == wg.macs


def test_conv2d_gradient_finite_difference():
    conv = Conv2d("fd", 1, 2, 2, 4, 4, kernel=3, stride=2, padding=1, groups=2)
    x = RNG.standard_normal((1, 2, 4, 4))
    w = RNG.standard_normal((2, 1, 3, 3))
    dy = RNG.standard_normal(conv.output_shape)
    loss = lambda xx, ww: np.vdot(dy, direct_conv(xx, ww, conv))  # noqa: E731
    w_col, x_col = weight_cols(w, 2), im2col(x, conv)
    dy_mat = dy.reshape(1, 2, 1, 2, 2).transpose(1, 0, 3, 4, 2).reshape(2, -1, 1)
    dx = col2im(dy_mat @ w_col.transpose(0, 2, 1), conv)
    dw = (x_col.transpose(0, 2, 1) @ dy_mat).transpose(0, 2, 1).reshape(w.shape)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 0, 3, 1)]:
        e = np.zeros_like(x)
        e[index] = eps
        assert (loss(x + e, w) - loss(x - e, w)) / (2 * eps) == pytest.approx(dx[index], abs=1e-6)
    for index in [(0, 0, 0, 0), (1, 0, 2, 1)]:
        e = np.zeros_like(w)
        e[index] = eps
        assert (loss(x, w + e) - loss(x, w - e)) / (2 * eps) == pytest.approx(dw[index], abs=1e-6)


def test_linear_gemms_match_numpy():
    layer = Linear("fc", batch=3, in_features=5, out_features=4, tokens=2)
    x = RNG.standard_normal((3, 2, 5))
    w = RNG.standard_normal((4, 5))                         # (out, in)
    dy = RNG.standard_normal((3, 2, 4))
    g = by_phase(layer.gemms())
    x_mat, dy_mat = x.reshape(-1, 5), dy.reshape(-1, 4)
    assert (g["forward"].m, g["forward"].k, g["forward"].n) == x_mat.shape + (w.T.shape[1],)
    assert w.T.shape == (g["forward"].k, g["forward"].n)
    y = x_mat @ w.T
    np.testing.assert_allclose(y.reshape(3, 2, 4), np.einsum("bti,oi->bto", x, w))
    # dgrad: dX = dY @ W  (W stored (out, in): the "W^T" of the x @ W convention)
    assert dy_mat.shape == (g["dgrad"].m, g["dgrad"].k) and w.shape == (g["dgrad"].k, g["dgrad"].n)
    dx = dy_mat @ w
    np.testing.assert_allclose(np.vdot(dy_mat, y), np.vdot(dx, x_mat))
    # wgrad: X^T @ dY = dW^T
    assert x_mat.T.shape == (g["wgrad"].m, g["wgrad"].k)
    assert dy_mat.shape == (g["wgrad"].k, g["wgrad"].n)
    dw_t = x_mat.T @ dy_mat
    np.testing.assert_allclose(np.vdot(dy_mat, y), np.vdot(dw_t, w.T))
    assert all(gm.count == 1 for gm in g.values())
    assert layer.macs() == 6 * 5 * 4


def test_matmul_gemms_match_numpy():
    layer = MatMul("attn.qk", batch=3, m=4, k=5, n=6)
    a = RNG.standard_normal((3, 4, 5))
    b = RNG.standard_normal((3, 5, 6))
    dc = RNG.standard_normal((3, 4, 6))
    g = by_phase(layer.gemms())
    c = a @ b
    assert all(gm.count == 3 for gm in g.values())
    f = g["forward"]
    assert a.shape[1:] == (f.m, f.k) and b.shape[1:] == (f.k, f.n)
    da = dc @ b.transpose(0, 2, 1)
    d = g["dgrad"]
    assert dc.shape[1:] == (d.m, d.k) and b.transpose(0, 2, 1).shape[1:] == (d.k, d.n)
    np.testing.assert_allclose(np.vdot(dc, c), np.vdot(da, a))
    db = a.transpose(0, 2, 1) @ dc
    w = g["wgrad"]
    assert a.transpose(0, 2, 1).shape[1:] == (w.m, w.k) and dc.shape[1:] == (w.k, w.n)
    np.testing.assert_allclose(np.vdot(dc, c), np.vdot(db, b))
    assert (f.m, f.k, f.n, d.m, d.k, d.n, w.m, w.k, w.n) == (4, 5, 6, 4, 6, 5, 5, 4, 6)


def test_phases_repeat_and_needs_input_grad():
    conv = Conv2d("c", 2, 4, 8, 6, 6, kernel=3, groups=2)
    assert [g.phase for g in conv.gemms()] == list(PHASES)
    assert [g.phase for g in conv.gemms(("wgrad", "forward"))] == ["wgrad", "forward"]
    assert [g.phase for g in conv.gemms("dgrad")] == ["dgrad"]
    assert [g.count for g in conv.gemms(repeat=3)] == [6, 6, 6]
    first = Conv2d("c", 2, 4, 8, 6, 6, kernel=3, needs_input_grad=False)
    assert [g.phase for g in first.gemms()] == ["forward", "wgrad"]
    assert first.gemms(("dgrad",)) == []
    assert first.macs("dgrad") == 0
    assert [g.phase for g in MatMul("mm", 1, 2, 3, 4, needs_input_grad=False).gemms()] == \
        ["forward", "wgrad"]
    assert [g.phase for g in Linear("l", 1, 2, 3, needs_input_grad=False).gemms()] == \
        ["forward", "wgrad"]
    g = Gemm("x", "forward", 2, 3, 4, 5)
    assert g.macs == 120
    with pytest.raises(ValueError, match="unknown phase 'backward'"):
        conv.gemms(("backward",))
    with pytest.raises(ValueError, match="'repeat' must be >= 1, got 0"):
        conv.gemms(repeat=0)
    with pytest.raises(ValueError, match="must not repeat"):
        conv.gemms(("forward", "forward"))


def test_conv_output_size_formula():
    conv = Conv2d("c", 1, 1, 1, 10, 11, kernel=(3, 4), stride=(2, 3), padding=(1, 2),
                  dilation=(2, 1))
    assert conv.out_height == (10 + 2 - 2 * 2 - 1) // 2 + 1
    assert conv.out_width == (11 + 4 - 3 - 1) // 3 + 1
    assert conv_output_size(224, 7, 2, 3, 1) == 112
    assert conv.kernel == (3, 4) and Conv2d("c", 1, 1, 1, 3, 3, kernel=3).kernel == (3, 3)


@pytest.mark.parametrize("build, message", [
    (lambda: Conv2d("conv1", 1, 3, 8, 5, 5, stride=0),
     "layer 'conv1': field 'stride' must be >= 1, got 0"),
    (lambda: Conv2d("conv1", 1, 3, 8, 5, 5, padding=-1),
     "layer 'conv1': field 'padding' must be >= 0, got -1"),
    (lambda: Conv2d("c2", 1, 3, 8, 5, 5, groups=2),
     "layer 'c2': field 'in_channels' must be divisible by groups=2, got 3"),
    (lambda: Conv2d("c2", 1, 4, 6, 5, 5, groups=4),
     "layer 'c2': field 'out_channels' must be divisible by groups=4, got 6"),
    (lambda: Conv2d("small", 1, 3, 8, 2, 5, kernel=3),
     "layer 'small': field 'height' = 2 is too small"),
    (lambda: Conv2d("small", 1, 3, 8, 5, 4, kernel=3, dilation=2),
     "layer 'small': field 'width' = 4 is too small"),
    (lambda: Conv2d("k", 1, 3, 8, 5, 5, kernel=(3, 3, 3)), "field 'kernel' must be an integer or a pair"),
    (lambda: Conv2d("k", 1, 3, 8, 5, 5, kernel=2.0), "field 'kernel' must be an integer or a pair"),
    (lambda: Conv2d("k", 0, 3, 8, 5, 5), "layer 'k': field 'batch' must be >= 1, got 0"),
    (lambda: Conv2d("k", 1, 3, 8, 5, 5, needs_input_grad=1), "field 'needs_input_grad'"),
    (lambda: Linear("fc", 1, 0, 5), "layer 'fc': field 'in_features' must be >= 1, got 0"),
    (lambda: Linear("fc", 1, 4, 5, tokens=True), "layer 'fc': field 'tokens' must be an integer"),
    (lambda: Linear("fc", 1.5, 4, 5), "layer 'fc': field 'batch' must be an integer, got 1.5"),
    (lambda: Linear("", 1, 4, 5), "layer name must be a non-empty string"),
    (lambda: MatMul("qk", 2, 3, -1, 4), "layer 'qk': field 'k' must be >= 1, got -1"),
    (lambda: Gemm("g", "fwd", 1, 1, 1), "field 'phase' must be one of"),
    (lambda: Gemm("g", "forward", 1, 0, 1), "layer 'g': field 'k' must be >= 1, got 0"),
])
def test_layer_validation(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        build()
    assert isinstance(info.value, BadInput) and isinstance(info.value, ShapeError)


def test_layers_are_frozen():
    layer = Linear("fc", 1, 2, 3)
    with pytest.raises(AttributeError):
        layer.batch = 2


# ----------------------------------------------------------------------------- tiler

TILE_CASES = [(1, 1, 1, 1, 1), (1, 7, 1, 4, 4), (5, 3, 7, 2, 3), (16, 1, 16, 4, 4),
              (17, 2, 33, 4, 8), (3, 5, 2, 64, 64), (65, 1, 130, 64, 64), (10, 4, 1, 3, 1),
              (1, 9, 10, 1, 3), (64, 2, 64, 64, 64), (100, 3, 37, 16, 8)]


@pytest.mark.parametrize("m, k, n, rows, cols", TILE_CASES)
def test_tiles_cover_output_exactly_once(m, k, n, rows, cols):
    result = list(tiles(m, k, n, rows, cols))
    cover = np.zeros((m, n), dtype=int)
    for t in result:
        assert isinstance(t, Tile) and t.k == k
        assert 1 <= t.rows <= rows and 1 <= t.cols <= cols
        assert t.row0 % rows == 0 and t.col0 % cols == 0
        cover[t.row0:t.row0 + t.rows, t.col0:t.col0 + t.cols] += 1
    assert (cover == 1).all()
    # row-major: along N first, then down M
    assert [(t.row0, t.col0) for t in result] == sorted((t.row0, t.col0) for t in result)
    assert len(result) == tile_count(m, n, rows, cols) == int(tile_counts(m, n, rows, cols))
    assert sum(t.rows * t.cols * t.k for t in result) == m * k * n
    # ragged tiles only at the bottom / right edge, with the remainder size
    for t in result:
        assert t.rows == (rows if t.row0 + rows <= m else m % rows)
        assert t.cols == (cols if t.col0 + cols <= n else n % cols)


def test_tile_order_and_ragged_example():
    result = list(tiles(5, 2, 7, 4, 3))
    assert [(t.row0, t.col0, t.rows, t.cols) for t in result] == [
        (0, 0, 4, 3), (0, 3, 4, 3), (0, 6, 4, 1),
        (4, 0, 1, 3), (4, 3, 1, 3), (4, 6, 1, 1)]
    assert list(tiles(1, 1, 1, 1, 1)) == [Tile(0, 0, 1, 1, 1)]
    assert list(tiles(1, 1, 1, ARRAY_DIM_MAX, ARRAY_DIM_MAX)) == [Tile(0, 0, 1, 1, 1)]


def test_tiles_is_lazy():
    it = tiles(10**6, 1, 10**6, 1, 1)          # 10^12 tiles: must not be materialised
    assert next(it) == Tile(0, 0, 1, 1, 1)
    assert next(it) == Tile(0, 1, 1, 1, 1)


@pytest.mark.parametrize("call, message", [
    (lambda: tiles(4, 4, 4, 0, 4), r"array rows \(1..64\) must be >= 1, got 0"),
    (lambda: tiles(4, 4, 4, 4, 65), r"array cols \(1..64\) must be <= 64, got 65"),
    (lambda: tiles(4, 4, 4, 4.0, 4), r"array rows \(1..64\) must be an integer, got 4.0"),
    (lambda: tiles(0, 4, 4, 4, 4), "GEMM dimension M must be an integer >= 1, got 0"),
    (lambda: tiles(4, 0, 4, 4, 4), "GEMM dimension K must be an integer >= 1, got 0"),
    (lambda: tiles(4, 4, -2, 4, 4), "GEMM dimension N must be an integer >= 1, got -2"),
    (lambda: tile_counts(4, 4, 4, True), r"array cols \(1..64\) must be an integer, got True"),
    (lambda: tile_counts(np.array([3, 0, 2]), 4, 4, 4), "M must be >= 1, got 0 at index 1"),
    (lambda: tile_counts(np.array([3.0]), 4, 4, 4), "M must be integers"),
    (lambda: tile_counts(4, np.array([1, -1]), 4, 4), "N must be >= 1"),
    (lambda: tile_counts(4, 4, 0, 4), "array rows"),
])
def test_tiler_validation(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert isinstance(info.value, BadInput)


def test_tile_counts_match_the_oracle():
    m = RNG.integers(1, 300, size=200)
    n = RNG.integers(1, 300, size=200)
    k = RNG.integers(1, 50, size=200)
    for rows, cols in [(1, 1), (4, 4), (16, 8), (7, 64), (64, 64)]:
        counts = tile_counts(m, n, rows, cols)
        for i in range(0, 200, 17):
            brute = list(tiles(int(m[i]), int(k[i]), int(n[i]), rows, cols))
            assert counts[i] == len(brute)
    # scalars broadcast to 0-d arrays
    assert int(tile_counts(5, 7, 4, 3)) == 6


def test_vectorized_resnet50_training_step_is_fast():
    gemms = training_step_gemms(resnet50())
    start = time.perf_counter()
    arrays = gemm_arrays(gemms)
    tiles_total = int((tile_counts(arrays.m, arrays.n, 16, 16) * arrays.count).sum())
    elapsed = time.perf_counter() - start
    assert elapsed < 0.2
    assert tiles_total == sum(tile_count(g.m, g.n, 16, 16) * g.count for g in gemms)
    assert tiles_total > 10**6
    assert int(arrays.macs.sum()) == total_macs(gemms)
    empty = gemm_arrays([])
    assert empty.m.shape == (0,) and tile_counts(empty.m, empty.n, 4, 4).shape == (0,)


# ---------------------------------------------------------------------------- models

def test_resnet50_structure_and_macs():
    layers = resnet50(batch=1)
    convs = [l for l in layers if isinstance(l, Conv2d)]
    assert len(convs) == 53 and len(layers) == 54
    assert sum(".downsample.0" in l.name for l in convs) == 4
    assert layers[0].name == "conv1" and layers[0].needs_input_grad is False
    assert all(l.needs_input_grad for l in layers[1:])
    assert layers[-1].name == "fc" and isinstance(layers[-1], Linear)
    assert (layers[-1].in_features, layers[-1].out_features) == (2048, 1000)
    names = [l.name for l in layers]
    assert len(set(names)) == len(names)
    assert names[:5] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3",
                         "layer1.0.downsample.0"]
    by_name = {l.name: l for l in layers}
    # v1.5: the stride sits on the 3x3 conv; maxpool takes 112 -> 56
    assert by_name["layer1.0.conv1"].height == 56
    assert by_name["layer2.0.conv1"].stride == (1, 1)
    assert by_name["layer2.0.conv2"].stride == (2, 2)
    assert by_name["layer2.0.downsample.0"].stride == (2, 2)
    assert by_name["layer4.2.conv3"].output_shape == (1, 2048, 7, 7)
    forward = total_macs(forward_gemms(layers))
    assert forward == pytest.approx(4.09e9, rel=0.01)
    assert forward == 4_089_184_256
    assert total_macs(forward_gemms(resnet50(batch=32))) == 32 * forward
    # fewer classes / other image sizes still build
    small = resnet50(batch=2, image=32, classes=10)
    assert small[-2].output_shape == (2, 2048, 1, 1) and small[-1].out_features == 10
    with pytest.raises(ValueError, match="parameter 'image' must be an integer >= 1"):
        resnet50(image=0)


def test_resnet50_training_step():
    layers = resnet50()
    gemms = training_step_gemms(layers)
    assert len(gemms) == 3 * 54 - 1 == 161
    per_layer = {}
    for g in gemms:
        per_layer.setdefault(g.layer, []).append(g.phase)
    assert per_layer["conv1"] == ["forward", "wgrad"]
    assert all(p == list(PHASES) for name, p in per_layer.items() if name != "conv1")
    forward = total_macs(forward_gemms(layers))
    assert total_macs(gemms) == 3 * forward - layers[0].macs()
    assert total_macs(gemms) == 388_785_242_112


def test_transformer_layers_and_macs():
    layers = transformer_tiny()
    kinds = {type(l) for l in layers}
    assert kinds == {Linear, MatMul}
    # per encoder layer: 6 attention + 2 FFN; per decoder layer 6 + 6 + 2; plus logits
    assert len(layers) == 2 * 8 + 2 * 14 + 1
    by_name = {l.name: l for l in layers}
    qk = by_name["encoder.0.self_attn.qk"]
    assert (qk.batch, qk.m, qk.k, qk.n) == (64 * 4, 64, 32, 64)
    pv = by_name["decoder.1.cross_attn.pv"]
    assert (pv.batch, pv.m, pv.k, pv.n) == (64 * 4, 64, 64, 32)
    fc1 = by_name["decoder.1.ffn.fc1"]
    assert (fc1.rows, fc1.in_features, fc1.out_features) == (4096, 128, 512)
    assert by_name["logits"].out_features == 32768
    # closed form: T tokens, S length, h hidden, f filter
    T, S, h, f, v = 4096, 64, 128, 512, 32768
    attention = 4 * T * h * h + 2 * T * S * h
    ffn = 2 * T * h * f
    expected = 2 * (attention + ffn) + 2 * (2 * attention + ffn) + T * h * v
    assert total_macs(forward_gemms(layers)) == expected
    assert total_macs(training_step_gemms(layers)) == 3 * expected
    base = transformer_base()
    assert len(base) == 6 * 8 + 6 * 14 + 1
    encoder_only = transformer(layers=1, hidden=8, filter=16, heads=2, seq_len=3, batch=1,
                               vocab=5, encoder_decoder=False)
    assert [l.name for l in encoder_only][-1] == "logits" and len(encoder_only) == 9
    with pytest.raises(ValueError, match="'hidden' must be divisible by heads=3"):
        transformer(hidden=128, heads=3)


def test_ncf():
    layers = ncf()
    shapes = [(l.name, l.batch, l.in_features, l.out_features) for l in layers]
    assert shapes == [("mlp.0", 256, 32, 32), ("mlp.1", 256, 32, 16),
                      ("mlp.2", 256, 16, 8), ("predict", 256, 16, 1)]
    custom = ncf(factors=64, batch=4, mlp_layers=[256, 256, 128, 64])
    assert [(l.in_features, l.out_features) for l in custom] == \
        [(256, 256), (256, 128), (128, 64), (128, 1)]
    with pytest.raises(ValueError, match="at least 2 widths"):
        ncf(mlp_layers=[8])


def test_model_registry():
    assert set(MODELS) == {"resnet50", "transformer-tiny", "transformer-base", "ncf"}
    for name, builder in MODELS.items():
        layers = builder()
        assert layers and all(hasattr(l, "gemms") for l in layers)
        assert training_step_gemms(layers)
        assert build_model(name) == layers
    with pytest.raises(BadInput, match="unknown model 'vgg'"):
        build_model("vgg")
