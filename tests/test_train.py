"""s2fp8 train (pysim.accuracy.quantize, pysim.accuracy.train, pysim.cli.train): the torch
quantizers bit for bit against pysim (S2FP8 against pysim's encode and against the
hardware output path's encode_hw), the quantization points of a conv, short training
runs per mode, determinism, loss-scale unscaling, divergence, and bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="s2fp8 train needs the torch extra")

from pysim.accuracy.gemm_error import _e4m3_roundtrip  # noqa: E402
import pysim.accuracy.quantize as quantize  # noqa: E402
from pysim.accuracy.quantize import (  # noqa: E402
    QUANTIZERS, GradientFlushCounter, NonFiniteTensor, QuantizedConv2d, QuantizedLinear,
    quantize_e4m3, quantize_e5m2, quantize_s2fp8, quantize_s2fp8_hw)
import pysim.accuracy.train as train  # noqa: E402
from pysim.accuracy.train import (  # noqa: E402
    TrainConfig, load_data, marked_token_data, train_run)
from pysim.cli import main  # noqa: E402
from pysim.numerics import outpath, s2fp8  # noqa: E402
from pysim.numerics.formats import E4M3, E5M2  # noqa: E402
from pysim.numerics.fp8 import E5M2_VALUES, e5m2_decode, e5m2_encode  # noqa: E402

N = 100_000


def _grid_and_midpoints(fmt_values: np.ndarray) -> np.ndarray:
    """Every finite grid point of a format, every midpoint between neighbours (the ties
    of round-to-nearest-even), and the float32 neighbours of each midpoint, both signs."""
    grid = np.unique(np.abs(fmt_values[np.isfinite(fmt_values)].astype(np.float64)))
    mids = ((grid[:-1] + grid[1:]) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)),
                           np.nextafter(mids, np.float32(0))])
    values = np.concatenate([grid.astype(np.float32), mids, near])
    return np.concatenate([values, -values])


def _wide_random(rng, n: int) -> np.ndarray:
    """float32 values over 2^-40 .. 2^20 (well past both ends of both formats), a tenth
    of them zero, with both zero signs."""
    x = (rng.standard_normal(n) * np.exp2(rng.uniform(-40, 20, n))).astype(np.float32)
    x[rng.random(n) < 0.1] = 0.0
    x[rng.random(n) < 0.02] = -0.0
    return x


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _e4m3_grid() -> np.ndarray:
    import ml_dtypes
    codes = np.arange(256, dtype=np.uint8)
    return codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)


@pytest.mark.parametrize("mode", ["e5m2", "e4m3"])
def test_fp8_quantizers_bit_exact(mode):
    """>= 1e5 values per mode, with every grid point, midpoint and midpoint neighbour,
    overflow and Inf, against pysim's E5M2 / the ml_dtypes E4M3 of gemm_error."""
    rng = np.random.default_rng(13)
    grid = _grid_and_midpoints(E5M2_VALUES if mode == "e5m2" else _e4m3_grid())
    specials = np.float32([np.inf, -np.inf, 57344, 61439, 61440, 1e30, 448, 463.9, 464,
                           464.01, -480, 2.0 ** -17, 2.0 ** -10, 1e-45])
    x = np.concatenate([_wide_random(rng, N), grid, specials])
    reference = {"e5m2": lambda a: e5m2_decode(e5m2_encode(a)), "e4m3": _e4m3_roundtrip}
    got = QUANTIZERS[mode](torch.from_numpy(x)).numpy()
    want = reference[mode](x)
    mismatch = _bits(got) != _bits(want)
    assert not mismatch.any(), (f"{int(mismatch.sum())} mismatches, first x="
                                f"{x[mismatch][:5]} got {got[mismatch][:5]} want "
                                f"{want[mismatch][:5]}")


def test_e4m3_overflow_is_nan_with_sign():
    x = torch.tensor([E4M3.max_finite, 464.0, 464.5, -1e6])
    q = quantize_e4m3(x)
    assert q[0] == E4M3.max_finite and q[1] == E4M3.max_finite  # the tie rounds to even
    assert math.isnan(q[2]) and math.isnan(q[3]) and torch.signbit(q[3])


def _s2fp8_distributions() -> dict[str, list[np.ndarray]]:
    """>= 1e5 values per distribution, as tensors (the statistics are per tensor)."""
    rng = np.random.default_rng(14)
    bits_range = 1 << 23
    subnormals = [rng.integers(1, bits_range, 1000, dtype=np.uint32).view(np.float32)
                  * rng.choice(np.float32([-1, 1]), 1000) for _ in range(90)]
    for tensor in subnormals[:60]:   # some with normal values among the subnormals
        normal = rng.random(1000) < 0.2
        tensor[normal] = rng.standard_normal(int(normal.sum())).astype(np.float32) * 1e-30
    relu = np.maximum(rng.standard_normal(1 << 17), 0).astype(np.float32) * np.float32(1e-3)
    return {
        # 200 tensors of different spreads, plus the E5M2 grid, midpoints and their
        # neighbours as one tensor, and the degenerate tensors
        "spread": [_wide_random(rng, 600) * np.float32(2.0 ** rng.integers(-30, 10))
                   for _ in range(200)]
        + [_grid_and_midpoints(E5M2_VALUES), np.zeros(7, np.float32),
           np.float32([-3.5, 3.5, 0, 3.5]), np.float32([1e-30])],
        # half zeros, one tensor large enough to be split over threads
        "relu": [relu, -relu[: 1 << 16]],
        # a few float32 ulps apart: alpha at the float32 limit of squeeze_limit
        "near-constant": [np.float32(3.0) * (1 + rng.integers(-4, 5, 1000).astype(np.float32)
                                             * np.float32(2.0 ** -23))
                          * np.float32(2.0 ** rng.integers(-40, 40)) for _ in range(100)]
        + [np.full(1000, np.float32(-0.1))],
        "subnormal-heavy": subnormals + [np.float32([2.0 ** -149, -(2.0 ** -149), 0])]
        + [_wide_random(rng, 10_000) * np.float32(2.0 ** -110)],
    }


def _hw_round_trip(x: np.ndarray) -> np.ndarray:
    encoded = outpath.encode_hw(x)
    return s2fp8.decode(s2fp8.S2FP8Tensor(encoded.codes, encoded.alpha, encoded.beta))


S2FP8_REFERENCES = {
    "s2fp8": (quantize_s2fp8, lambda x: s2fp8.decode(s2fp8.encode(x))),
    "s2fp8-hw": (quantize_s2fp8_hw, _hw_round_trip),
}


@pytest.fixture(scope="module")
def s2fp8_distributions():
    return _s2fp8_distributions()


@pytest.mark.parametrize("mode", list(S2FP8_REFERENCES))
@pytest.mark.parametrize("distribution", ["spread", "relu", "near-constant", "subnormal-heavy"])
def test_s2fp8_quantizers_bit_exact(mode, distribution, s2fp8_distributions):
    """>= 1e5 values per distribution: s2fp8 against pysim's encode and decode, s2fp8-hw
    against the output path's encode_hw and the same decode."""
    tensors = s2fp8_distributions[distribution]
    assert sum(t.size for t in tensors) >= N
    ours, reference = S2FP8_REFERENCES[mode]
    for x in tensors:
        got = ours(torch.from_numpy(x)).numpy()
        want = reference(x)
        assert np.array_equal(_bits(got), _bits(want)), (
            f"{int((_bits(got) != _bits(want)).sum())} of {x.size} differ, first x="
            f"{x[_bits(got) != _bits(want)][:5]}")
    # a non-contiguous view quantizes its own elements
    base = torch.from_numpy(tensors[0][:600].reshape(20, 30))
    assert torch.equal(ours(base.t()), ours(base.t().contiguous()))


def test_s2fp8_fallbacks_are_pysim(s2fp8_distributions, monkeypatch):
    """The two slow paths of quantize_s2fp8, forced: pysim's own statistics (when the sum
    bound cannot settle the float32 alpha and beta) and the bisection for threshold
    entries whose float64 estimate is wrong (here every estimate is off)."""
    monkeypatch.setattr(quantize, "_exact_alpha_beta", lambda *args: None)
    estimate = outpath.threshold_table
    monkeypatch.setattr(quantize.outpath, "threshold_table",
                        lambda alpha, beta: np.maximum(estimate(alpha, beta), 3) - 3)
    for name in ("spread", "near-constant", "subnormal-heavy"):
        for x in s2fp8_distributions[name][::20]:
            got = quantize_s2fp8(torch.from_numpy(x)).numpy()
            assert np.array_equal(_bits(got), _bits(s2fp8.decode(s2fp8.encode(x))))


def test_s2fp8_sum_bound_holds(s2fp8_distributions):
    """pysim's mean log2 lies inside the interval the fast statistics derive from their
    approximate sum and its bound, and the bound is far below a float32 step of alpha."""
    for name, tensors in s2fp8_distributions.items():
        for x in tensors[::10]:
            bits = x.reshape(-1).view(np.uint32)
            count, low, high, _, exponents, log2_mantissas = quantize._float_moments(bits)
            if count == 0 or low == high:
                continue
            low_log2, high_log2 = quantize._log2_of_magnitudes(low, high)
            approx = float(exponents) + math.fsum(log2_mantissas)
            bound = quantize._sum_bound(count, bits.size, max(abs(low_log2), abs(high_log2)),
                                        approx, len(log2_mantissas))
            mu, m, _, _ = s2fp8.stats(x)
            assert m == high_log2
            if mu < m:
                assert (approx - bound) / count <= mu <= (approx + bound) / count, name
                assert bound / count < 1e-9 * max(abs(mu), 1.0), name


def test_s2fp8_alpha_beta_refuses_an_unsettled_interval():
    """Sums whose ends give different float32 alpha leave the decision to pysim."""
    count, high = 1000, 4.0
    assert quantize._exact_alpha_beta(count, -1000.0, -1000.0, high) is not None
    assert quantize._exact_alpha_beta(count, -1000.0, -999.0, high) is None
    assert quantize._exact_alpha_beta(count, -1.0, 1.0, high) is None    # mu changes sign
    # alpha at the float32 limit (a near-constant tensor): beta = -c sign(mu) is the same
    # at both ends, alpha is not
    assert quantize._exact_alpha_beta(count, 10_000.0, 10_000.01, 10.0001) is None
    assert quantize._exact_alpha_beta(count, 10_000.0, 10_000.0, 10.0001) is not None
    # mu near 0: the same float32 alpha at both ends, not the same beta
    assert quantize._exact_alpha_beta(count, 1e-3, 1.001e-3, high) is None


@pytest.mark.parametrize("mode", list(S2FP8_REFERENCES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_s2fp8_quantizers_refuse_nonfinite(mode, bad):
    with pytest.raises(NonFiniteTensor):
        QUANTIZERS[mode](torch.tensor([1.0, bad, 0.0]))


def test_conv_quantization_points():
    """Forward: conv of the quantized input and weight. Backward: the incoming gradient
    quantized once, dgrad and wgrad from it and the saved quantized operands. The flush
    counter sees the gradient before quantization."""
    torch.manual_seed(0)
    counter = GradientFlushCounter()
    conv = QuantizedConv2d(3, 4, 3, quantize=quantize_e5m2, counter=counter, name="c")
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    grad = torch.randn(2, 4, 5, 5) * 2.0 ** -14     # many entries below E5M2's subnormals
    out = conv(x)
    out.backward(grad)
    qx, qw, qg = quantize_e5m2(x.detach()), quantize_e5m2(conv.weight.detach()), \
        quantize_e5m2(grad)
    nn = torch.nn.grad
    assert torch.equal(out, torch.nn.functional.conv2d(qx, qw, padding=1))
    assert torch.allclose(x.grad, nn.conv2d_input(x.shape, qw, qg, padding=1), rtol=1e-6,
                          atol=0)
    assert torch.allclose(conv.weight.grad, nn.conv2d_weight(qx, qw.shape, qg, padding=1),
                          rtol=1e-6, atol=0)
    flushed = int(((grad != 0) & (qg == 0)).sum())
    assert flushed > 0 and counter.flushed == {"c": flushed}
    assert counter.fractions()["c"] == flushed / grad.numel()


def test_linear_quantization_points():
    torch.manual_seed(1)
    fc = QuantizedLinear(6, 3, quantize=quantize_s2fp8)
    x = torch.randn(4, 6, requires_grad=True)
    grad = torch.randn(4, 3) * 1e-6
    out = fc(x)
    out.backward(grad)
    qx, qw, qg = (quantize_s2fp8(t.detach()) for t in (x, fc.weight, grad))
    assert torch.equal(out, qx @ qw.t() + fc.bias)
    assert torch.equal(x.grad, qg @ qw)
    assert torch.equal(fc.weight.grad, qg.t() @ qx)
    assert torch.equal(fc.bias.grad, grad.sum(0))   # the bias stays FP32


@pytest.fixture(scope="module")
def small_data():
    return load_data(train_subset=96)


def _short(mode, seed=0, **kw):
    """2 steps of 48 images per epoch, 1 epoch unless given."""
    kw.setdefault("epochs", 1)
    kw.setdefault("batch_size", 48)
    kw.setdefault("model", "resnet8")
    return TrainConfig(mode=mode, seed=seed, train_subset=96, **kw)


def test_same_seed_same_result(small_data):
    a = train_run(_short("s2fp8"), small_data)
    b = train_run(_short("s2fp8"), small_data)
    c = train_run(_short("s2fp8", seed=1), small_data)
    assert a.train_loss == b.train_loss and a.test_accuracies == b.test_accuracies
    assert a.grad_flushed == b.grad_flushed
    assert a.train_loss != c.train_loss
    assert list(a.grad_flushed) == ["conv1", "block1.a", "block1.b", "block2.a", "block2.b",
                                    "block3.a", "block3.b", "fc"]


def test_loss_scale_is_undone_before_the_step(small_data):
    """Scaling the FP32 loss by a power of two scales every gradient exactly, so with the
    unscaling before the optimizer step the run is identical to the unscaled one."""
    plain = train_run(_short("fp32", epochs=2, model="mlp"), small_data)
    scaled = train_run(_short("fp32", epochs=2, model="mlp", loss_scale=1024.0), small_data)
    assert scaled.train_loss == plain.train_loss
    assert scaled.test_accuracies == plain.test_accuracies


def test_nan_loss_stops_the_run(small_data):
    run = train_run(_short("fp32", epochs=3, model="mlp", lr=1e30), small_data)
    assert run.diverged_epoch is not None and run.test_accuracy is None
    assert run.final_train_loss is None


def test_nonfinite_weights_at_evaluation_stop_the_run(small_data, monkeypatch):
    """An Inf/NaN weight reaching an S2FP8 quantizer in the test pass is a divergence,
    not an internal error."""
    import pysim.accuracy.train as train

    def nonfinite(*args):
        raise NonFiniteTensor("weight")
    monkeypatch.setattr(train, "_accuracy", nonfinite)
    run = train_run(_short("fp32", epochs=2, model="mlp"), small_data)
    assert run.diverged_epoch == 1 and run.test_accuracy is None and run.train_loss == []


def test_cli_smoke_every_mode(tmp_path, capsys):
    """1 epoch on 64 images per mode (and E5M2 with loss scaling): the table, the JSON
    and the PNG."""
    out_json, out_png = tmp_path / "runs.json", tmp_path / "curves.png"
    assert main(["train", "--epochs", "1", "--seeds", "3", "--train-subset", "64",
                 "--json", str(out_json), "--plot", str(out_png), "--quiet"]) == 0
    text = capsys.readouterr().out
    for label in ("FP32", "S2FP8", "S2FP8-HW", "E5M2", "E5M2 + LS 1024", "E4M3"):
        assert f"\n{label} " in text
    assert "gradient entries flushed to zero" in text
    runs = json.loads(out_json.read_text())["runs"]
    assert [(r["mode"], r["loss_scale"]) for r in runs] == [
        ("fp32", None), ("s2fp8", None), ("s2fp8-hw", None), ("e5m2", None),
        ("e5m2", 1024.0), ("e4m3", None)]
    for r in runs:
        assert r["seed"] == 3 and 0 <= r["test_accuracy"] <= 100
        assert r["final_train_loss"] > 0 and len(r["train_loss"]) == 1
    assert runs[0]["grad_flushed"] == {}
    assert set(runs[1]["grad_flushed"]) >= {"conv1", "fc"}
    assert runs[2]["label"] == "S2FP8-HW" and set(runs[2]["grad_flushed"]) >= {"conv1", "fc"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_marked_token_data():
    """One marker per sequence, the label is the marked token, same data every call."""
    x, y, x_test, y_test = marked_token_data()
    assert x.shape == (train.SEQ_TRAIN, train.SEQ_LEN, train.SEQ_VOCAB + 1)
    assert x_test.shape[0] == len(y_test) == train.SEQ_TEST
    assert torch.equal(x[:, :, :-1].sum(dim=2), torch.ones(x.shape[:2]))
    assert torch.equal(x[:, :, -1].sum(dim=1), torch.ones(len(x)))
    marked = x[:, :, -1].argmax(dim=1)
    assert torch.equal(x[torch.arange(len(x)), marked, :-1].argmax(dim=1), y)
    assert torch.equal(marked_token_data(100)[1], y[:100])


def test_transformer_has_no_unquantized_gemm():
    """Every Linear of the Transformer is a QuantizedLinear with the run's quantizer, no
    other GEMM module (conv, embedding, torch's attention) exists, and one backward pass
    sends a nonzero gradient through every layer's quantizer (none bypassed)."""
    torch.manual_seed(0)
    counter = GradientFlushCounter()
    model = train.build_model("transformer", quantize_e5m2, counter)
    linears = {name: m for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)}
    assert len(linears) == 2 + 6 * len(model.blocks)
    assert all(isinstance(m, QuantizedLinear) and m.quantize is quantize_e5m2
               for m in linears.values())
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.Embedding,
                                  torch.nn.MultiheadAttention, torch.nn.Bilinear))
                   for m in model.modules())
    assert list(counter.nonzero) == [m.name for m in linears.values()]
    x, y, _, _ = marked_token_data(8)
    # a loss scale keeps the test's gradients above E5M2's underflow
    (1024 * torch.nn.functional.cross_entropy(model(x), y)).backward()
    assert all(n > 0 for n in counter.nonzero.values()), counter.nonzero


def test_cli_transformer_smoke(tmp_path, capsys):
    """1 epoch of the Transformer on 256 sequences in FP32 and S2FP8."""
    out_json = tmp_path / "runs.json"
    assert main(["train", "--model", "transformer", "--modes", "fp32,s2fp8", "--epochs",
                 "1", "--seeds", "0", "--train-subset", "256", "--quiet", "--json",
                 str(out_json)]) == 0
    assert "transformer on marked-token sequences" in capsys.readouterr().out
    document = json.loads(out_json.read_text())
    runs = document["runs"]
    assert document["model"] == "transformer"
    assert [r["mode"] for r in runs] == ["fp32", "s2fp8"]
    for r in runs:
        assert r["steps"] == 1 and 0 <= r["test_accuracy"] <= 100
        assert math.isfinite(r["final_train_loss"]) and r["final_train_loss"] > 0
    assert runs[0]["grad_flushed"] == {}
    assert list(runs[1]["grad_flushed"])[::13] == ["embed", "head"]


@pytest.mark.parametrize("argv, message", [
    (["--modes", "fp16"], "unknown mode 'fp16'"),
    (["--modes", "fp32,,s2fp8"], "comma-separated"),
    (["--seeds", "a"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "0,0"], "twice"),
    (["--seeds", ""], "--seeds"),
    (["--epochs", "0"], "--epochs"),
    (["--loss-scale", "-4"], "--loss-scale"),
    (["--loss-scale", "inf"], "--loss-scale"),
    (["--model", "vgg"], "unknown model"),
    (["--plot", "curves.jpg"], ".png"),
])
def test_bad_input_exit_2(argv, message, tmp_path, capsys):
    out_json = tmp_path / "runs.json"
    assert main(["train", "--json", str(out_json), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out_json.exists()


def test_unwritable_output_writes_nothing(tmp_path, capsys):
    out_png = tmp_path / "curves.png"
    assert main(["train", "--epochs", "1", "--seeds", "0", "--modes", "fp32",
                 "--model", "mlp", "--train-subset", "32", "--quiet", "--plot",
                 str(out_png), "--json", str(tmp_path / "missing" / "runs.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not out_png.exists()


def test_missing_torch_is_one_line_with_the_install_command(monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def import_without_torch(name, *args, **kwargs):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", import_without_torch)
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install torch==2.13.0 && pip install -e ".[torch]"' in err
    assert "torch is missing" in err and err.count("\n") == 1
