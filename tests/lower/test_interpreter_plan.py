"""The interpreter's fast paths (nnchip.lower.plan, nnchip.lower.exact_float) against the integer reference.

Property tests at the bounds each fast path claims: float64 requantization vs int64, the split form vs int64,
chunked float32 reductions vs int64 when the weight-aware bound exceeds 2^24, tables vs the reference
evaluation; and the graph-level plan: fast == reference on every test model, the accumulator check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lowering_cases import PRECISIONS, lowered

from nnchip.core import compiled
from nnchip.core.errors import ConversionError
from nnchip.core.int_nonlinear import exp_shift_x0, softmax_exp_table
from nnchip.core.intspec import IntSpec
from nnchip.lower import fused, run
from nnchip.lower.exact_float import Saturation, SplitRequant, chunks_below, requant_in_float, window_exact
from nnchip.lower.interpreter import reference_step
from nnchip.lower.intgraph import IntGraph, IntNode, IntTensor
from nnchip.lower.plan import plan_for


def exact_requant(values: list[int], m0: int, n: int, zp: int, lo: int, hi: int) -> torch.Tensor:
    """The contract's requant in Python integers (no width limit): sat(floor((v·M0 + 2^(n−1)) / 2^n) + zp)."""
    return torch.tensor([min(max(((v * m0 + (1 << (n - 1))) >> n) + zp, lo), hi) for v in values])


NARROWEST = {(0, 255): torch.uint8, (-128, 127): torch.int8, (-32768, 32767): torch.int16, (0, 15): torch.uint8,
             (-1, 1): torch.int8}

requant_cases = st.tuples(
    st.integers(0, 2**31 - 1),  # M0
    st.integers(1, 62),  # n
    st.integers(-300, 300),  # zero point
    st.sampled_from([(0, 255), (-128, 127), (-32768, 32767), (0, 15), (-1, 1)]),  # lo, hi
)


@settings(max_examples=300, deadline=None)
@given(case=requant_cases, values=st.lists(st.integers(-(2**52) + 1, 2**52 - 1), min_size=1, max_size=40),
       near=st.integers(-(2**20), 2**20))
def test_float64_requant_equals_int64_wherever_the_window_condition_holds(case, values, near) -> None:
    m0, n, zp, (lo, hi) = case
    if not window_exact(np.array([n]), zp, lo, hi):
        return
    # values around the rounding ties and the clamp window, plus arbitrary ones up to 2^52
    ties = [((2 * k + 1) << (n - 1)) // max(m0, 1) + d for k in (lo - zp - 1, 0, hi - zp) for d in (-1, 0, 1)]
    candidates = values + ties + [near, 2**52 - 1, -(2**52) + 1]
    v = torch.tensor(candidates, dtype=torch.int64)
    expected = exact_requant(candidates, m0, n, zp, lo, hi)
    m = torch.tensor(math.ldexp(m0, -n), dtype=torch.float64)
    t_max = max(abs(x) for x in candidates) * math.ldexp(m0, -n) + abs(zp) + 1
    for out_dtype in (torch.int64, NARROWEST[(lo, hi)]):  # the narrow one may take the int16 saturation
        saturation = Saturation(lo, hi, out_dtype, t_max)
        if not window_exact(np.array([n]), zp + saturation.shift, lo + saturation.shift, hi + saturation.shift):
            saturation = Saturation(lo, hi, out_dtype, t_max, may_shift=False)
        got = requant_in_float(v.to(torch.float64), m, zp + 0.5, saturation)
        assert got.dtype == out_dtype and torch.equal(got.to(torch.int64), expected)


@settings(max_examples=300, deadline=None)
@given(case=requant_cases, data=st.data())
def test_int16_saturation_equals_int64_on_bounded_accumulators(case, data) -> None:
    """Accumulators bounded so that |v·m + zp| stays within int16: the narrow saturation (truncating conversion,
    clamp and shift on int16) must give the contract's floor-and-clamp, ties and window edges included."""
    m0, n, zp, (lo, hi) = case
    m = math.ldexp(m0, -n)
    v_max = min(int((2**14 - abs(zp) - abs(lo)) / max(m, 2.0**-40)), 2**52 - 1)
    if v_max < 1 or not window_exact(np.array([n]), zp, lo, hi):
        return
    ties = [((2 * k + 1) << (n - 1)) // max(m0, 1) + d for k in (lo - zp - 1, -1, 0, hi - zp) for d in (-1, 0, 1)]
    values = [v for v in ties if abs(v) <= v_max] + data.draw(st.lists(st.integers(-v_max, v_max), max_size=30))
    values += [v_max, -v_max, 0]
    saturation = Saturation(lo, hi, NARROWEST[(lo, hi)], v_max * m + abs(zp) + 1)
    if not window_exact(np.array([n]), zp + saturation.shift, lo + saturation.shift, hi + saturation.shift):
        return
    assert saturation.narrow
    got = requant_in_float(torch.tensor(values, dtype=torch.float64), torch.tensor(m, dtype=torch.float64),
                           zp + 0.5, saturation)
    assert torch.equal(got.to(torch.int64), exact_requant(values, m0, n, zp, lo, hi))


@settings(max_examples=300, deadline=None)
@given(m0=st.integers(-(2**31) + 1, 2**31 - 1), n=st.integers(1, 62), zp=st.integers(-200, 200),
       v_bits=st.integers(1, 40), beta=st.integers(-(2**20), 2**20), data=st.data())
def test_split_requant_equals_int64_at_the_bounds(m0: int, n: int, zp: int, v_bits: int, beta: int, data) -> None:
    v_max = (1 << v_bits) - 1
    lo, hi = data.draw(st.sampled_from([(-128, 127), (0, 255), (-32768, 32767)]))
    out_dtype = data.draw(st.sampled_from([torch.int64, NARROWEST[(lo, hi)]]))
    split = SplitRequant.build(v_max + abs(beta), np.array([m0]), np.array([n]), zp, lo, hi, np.array([beta]),
                               out_dtype)
    if split is None:  # only a large multiplier (small n) times a wide accumulator cannot be split exactly
        assert n < 20 or v_bits > 32
        return
    values = data.draw(st.lists(st.integers(-v_max, v_max), min_size=1, max_size=30)) + [v_max, -v_max, 0]
    v = torch.tensor(values, dtype=torch.int64)
    expected = exact_requant([x + beta for x in values], m0, n, zp, lo, hi)
    got = split(v.to(torch.float64), lambda column: column.reshape(()))
    assert got.dtype == out_dtype and torch.equal(got.to(torch.int64), expected)


def test_float64_square_root_floors_exactly_below_2_52() -> None:
    """LayerNorm's std = floor(sqrt(var)) in float64: exact for var < 2^52, checked around perfect squares."""
    generator = torch.Generator().manual_seed(0)
    k = torch.cat([torch.randint(1, 2**26, (200_000,), generator=generator, dtype=torch.int64),
                   torch.arange(1, 5000), torch.tensor([2**26 - 1])])
    for v in (k * k - 1, k * k, k * k + 1):
        expected = torch.where(v < k * k, k - 1, k)
        assert torch.equal(torch.sqrt(v.to(torch.float64)).floor_().to(torch.int64), expected)


def test_chunks_keep_every_partial_sum_below_the_limit() -> None:
    rng = np.random.default_rng(0)
    contributions = rng.integers(0, 2**20, size=(7, 300))
    chunks = chunks_below(contributions, 2**24)
    assert chunks is not None and len(chunks) > 1
    assert [c[0] for c in chunks[1:]] == [c[1] for c in chunks[:-1]] and chunks[-1][1] == 300
    assert all(contributions[:, a:b].sum(axis=1).max() < 2**24 for a, b in chunks)
    assert chunks_below(np.full((1, 3), 2**24), 2**24) is None


def single_node_graph(op: str, x_spec: IntSpec, shape: tuple[int, ...], params: dict[str, np.ndarray],
                      attrs: dict[str, object], extra_inputs: dict[str, tuple[IntSpec, tuple[int, ...]]] | None = None,
                      out_spec: IntSpec | None = None) -> IntGraph:
    out_spec = out_spec or IntSpec(8, signed=True)
    tensors = {"x": IntTensor("x", shape, x_spec, 0, 1.0)}
    for name, (spec, extra_shape) in (extra_inputs or {}).items():
        tensors[name] = IntTensor(name, extra_shape, spec, 0, 1.0)
    node = IntNode("n", op, ["x", *(extra_inputs or {})], "y", params, {"source": "n (test)", **attrs})
    out_shape = tuple(run_shape(op, shape, params, extra_inputs))
    tensors["y"] = IntTensor("y", out_shape, out_spec, 0, 1.0)
    return IntGraph(tensors, [node], ["x", *(extra_inputs or {})], ["y"])


def run_shape(op: str, shape: tuple[int, ...], params: dict[str, np.ndarray],
              extra_inputs: dict[str, tuple[IntSpec, tuple[int, ...]]] | None) -> tuple[int, ...]:
    if op == "linear":
        return (*shape[:-1], params["weight"].shape[0])
    if op == "matmul":
        assert extra_inputs is not None
        return (*shape[:-1], next(iter(extra_inputs.values()))[1][-1])
    return shape


def random_int(spec: IntSpec, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(spec.qmin, spec.qmax + 1, shape, generator=generator, dtype=torch.int64)


def extremes(spec: IntSpec, shape: tuple[int, ...]) -> torch.Tensor:
    """Alternating qmin/qmax: the largest partial sums the bound allows."""
    flat = torch.tensor([spec.qmin, spec.qmax] * (math.prod(shape) // 2 + 1), dtype=torch.int64)
    return flat[: math.prod(shape)].reshape(shape)


def requant_params(channels: int, m0: int = 1_500_000_000, n: int = 50) -> dict[str, np.ndarray]:
    return {"multiplier": np.full(channels, m0, dtype=np.int64), "shift": np.full(channels, n, dtype=np.int64)}


@pytest.mark.parametrize(("weight_bits", "path"), [(8, "float32-chunks"), (16, "float64")])
def test_linear_with_a_bound_above_2_24_runs_in_chunks_and_matches_int64(weight_bits: int, path: str) -> None:
    """8-bit weights × 16-bit inputs: chunks below 2^24 added in int64; 16 × 16 bits: one product already
    exceeds 2^24, so float64 (exact below 2^53)."""
    x_spec = IntSpec(16, signed=True)
    rng = np.random.default_rng(weight_bits)
    weight = rng.integers(-(2 ** (weight_bits - 1)) + 1, 2 ** (weight_bits - 1), size=(6, 96)).astype(np.int64)
    graph = single_node_graph("linear", x_spec, (5, 96),
                              {"weight": weight, "bias": rng.integers(-1000, 1000, 6).astype(np.int64),
                               **requant_params(6, m0=20_000_000, n=30 + weight_bits)},  # acc·M0 < 2^63
                              {"in_zero_point": 0, "out_zero_point": 3, "lo": -128, "hi": 127, "acc_bits": 48,
                               "declared_acc_bits": 48, "rounding": "half_up"})
    plan = plan_for(graph, reference_step)
    assert plan.paths["n"].startswith(path)
    for x in (random_int(x_spec, (5, 96)), extremes(x_spec, (5, 96))):
        assert torch.equal(run(graph, x).tensors["y"], run(graph, x, fast=False).tensors["y"])


def test_conv_with_a_bound_above_2_24_runs_in_chunks_and_matches_int64() -> None:
    x_spec = IntSpec(12, signed=False)
    rng = np.random.default_rng(1)
    weight = rng.integers(-700, 700, size=(4, 40, 3, 3)).astype(np.int64)
    graph = single_node_graph("conv2d", x_spec, (2, 40, 6, 6),
                              {"weight": weight, "bias": np.zeros(4, dtype=np.int64), **requant_params(4, n=52)},
                              {"in_zero_point": 2048, "out_zero_point": 0, "lo": -128, "hi": 127, "acc_bits": 40,
                               "declared_acc_bits": 40, "rounding": "half_up", "stride": [1, 1], "padding": [1, 1],
                               "dilation": [1, 1], "groups": 1, "pad_value": 2048})
    plan = plan_for(graph, reference_step)
    assert plan.paths["n"].startswith("float32-chunks")
    for x in (random_int(x_spec, (2, 40, 6, 6)), extremes(x_spec, (2, 40, 6, 6))):
        assert torch.equal(run(graph, x).tensors["y"], run(graph, x, fast=False).tensors["y"])


def test_matmul_with_a_bound_above_2_24_adds_chunks_in_int64() -> None:
    spec = IntSpec(12, signed=True)
    graph = single_node_graph("matmul", spec, (3, 4, 200), requant_params(1, n=45),
                              {"out_zero_point": 0, "lo": -128, "hi": 127, "acc_bits": 32, "rounding": "half_up"},
                              extra_inputs={"w": (spec, (3, 200, 5))})
    inputs = [extremes(spec, (3, 4, 200)), extremes(spec, (3, 200, 5)).flip(-1)]
    assert torch.equal(run(graph, inputs).tensors["y"], run(graph, inputs, fast=False).tensors["y"])


@pytest.mark.parametrize("bits", [8, 12])
def test_residual_add_fast_path_matches_the_reference(bits: int) -> None:
    spec = IntSpec(bits, signed=False)
    params = {"multiplier": np.array([1_234_567_891, 2_000_000_001], dtype=np.int64),
              "shift": np.array([31, 30], dtype=np.int64)}
    graph = single_node_graph("add", spec, (4, 3, 5, 5), params,
                              {"zero_points": [7, 130], "out_zero_point": 9, "frac_bits": 8, "lo": 0, "hi": 255,
                               "rounding": "half_up"}, extra_inputs={"b": (spec, (4, 3, 5, 5))},
                              out_spec=IntSpec(8, signed=False))
    assert plan_for(graph, reference_step).paths["n"] == ("table" if bits == 8 else "float64")
    inputs = [random_int(spec, (4, 3, 5, 5), 1), random_int(spec, (4, 3, 5, 5), 2)]
    assert torch.equal(run(graph, inputs).tensors["y"], run(graph, inputs, fast=False).tensors["y"])


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_fast_plan_equals_the_reference_on_every_tensor(kind: str, precision: str, kernels: str) -> None:
    _, graph, _, x_int = lowered(kind, precision)
    fast, reference = run(graph, x_int[:16]).tensors, run(graph, x_int[:16], fast=False).tensors
    assert set(fast) == set(reference)
    for name in reference:
        assert torch.equal(fast[name], reference[name]), name
    paths = plan_for(graph, reference_step).paths
    slow = [n.name for n in graph.nodes if paths[n.name] == "reference" and n.op not in ("constant", "maxpool")]
    assert not slow, slow


def test_integer_nonlinear_vit_runs_on_fast_paths(kernels: str) -> None:
    _, graph, _, x_int = lowered("vit", "w8a8", nonlinear="integer")
    assert torch.equal(run(graph, x_int[:8]).outputs(graph)[0], run(graph, x_int[:8], fast=False).outputs(graph)[0])


@pytest.mark.parametrize("mode", ["table", "shiftmax"])
@pytest.mark.parametrize("in_bits", [8, 12])
def test_softmax_fast_paths_match_the_reference_at_the_extremes(mode: str, in_bits: int, kernels: str) -> None:
    """Rows of equal values (largest sum), one large value among minima (smallest sum) and random rows."""
    spec = IntSpec(in_bits, signed=True)
    scale = 2.0 ** -(in_bits - 5)
    params = {"table": softmax_exp_table(scale, spec.qmax - spec.qmin).numpy()} if mode == "table" else {}
    attrs = {"dim": -1, "out_bits": 8, "mode": mode, "rounding": "half_up",
             **({} if mode == "table" else {"x0": exp_shift_x0(scale), "n": 15})}
    graph = single_node_graph("softmax", spec, (3, 4, 65), params, attrs, out_spec=IntSpec(8, signed=False))
    assert plan_for(graph, reference_step).paths["n"] == "table"
    x = random_int(spec, (3, 4, 65), 5)
    x[0, 0] = spec.qmax
    x[0, 1] = spec.qmin
    x[0, 2, 0] = spec.qmax
    x[0, 2, 1:] = spec.qmin
    assert torch.equal(run(graph, x).tensors["y"], run(graph, x, fast=False).tensors["y"])


@settings(max_examples=200, deadline=None)
@given(case=requant_cases, data=st.data())
def test_fused_requant_kernels_equal_the_contract(case, data) -> None:
    """The compiled single-pass requantizations (one product, and split) on ties, window edges and extremes."""
    compiled.refresh()
    if not fused.available():
        return
    m0, n, zp, (lo, hi) = case
    v_max = 2**data.draw(st.integers(1, 40)) - 1
    m = torch.tensor([math.ldexp(m0, -n)], dtype=torch.float64)
    ties = [((2 * k + 1) << (n - 1)) // max(m0, 1) + d for k in (lo - zp - 1, -1, 0, hi - zp) for d in (-1, 0, 1)]
    values = [v for v in ties if abs(v) <= v_max] + data.draw(st.lists(st.integers(-v_max, v_max), max_size=30))
    values += [v_max, -v_max, 0]
    v = torch.tensor(values, dtype=torch.float64)
    expected = exact_requant(values, m0, n, zp, lo, hi)
    if window_exact(np.array([n]), zp, lo, hi):
        got = fused.requant(v, None, m.numpy(), np.array([zp + 0.5]), lo, hi, 0, torch.int64)
        assert torch.equal(got, expected)
    split = SplitRequant.build(v_max, np.array([m0]), np.array([n]), zp, lo, hi, None, NARROWEST[(lo, hi)])
    if split is not None:
        columns = [fused.per_channel(column, 1) for column in split.columns()]
        got = fused.split_requant(v, None, columns, *split.shifted_window(), torch.int64)
        assert torch.equal(got, expected)


def test_static_bound_decides_the_run_time_check_and_flags_once_per_node() -> None:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    x_int = torch.cat([x_int] * 40)  # a batch large enough to run in slices
    assert not run(graph, x_int).overflows  # the weight-aware bound proves every accumulator fits
    node = next(n for n in graph.nodes if n.op == "conv2d")
    node.attrs["declared_acc_bits"] = 8  # now the bound no longer proves it: checked at run time
    with pytest.raises(ConversionError, match="accumulator outside 8 bits"):
        run(graph, x_int)
    reported = run(graph, x_int, overflow="report").overflows
    assert reported == [f"{node.attrs['source']}: accumulator outside 8 bits"]
    assert reported == run(graph, x_int, overflow="report", fast=False).overflows


def test_plan_is_rebuilt_when_a_parameter_array_is_replaced() -> None:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    before = run(graph, x_int[:4]).outputs(graph)[0]
    node = next(n for n in graph.nodes if n.op == "linear")
    node.params["bias"] = node.params["bias"] + 1000
    after = run(graph, x_int[:4]).outputs(graph)[0]
    assert not torch.equal(before, after)
    assert torch.equal(after, run(graph, x_int[:4], fast=False).outputs(graph)[0])


@pytest.fixture
def two_threads():  # type: ignore[no-untyped-def]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_two_threads_and_released_intermediates_equal_the_reference(kind: str, two_threads, kernels: str) -> None:
    _, graph, _, x_int = lowered(kind, "w4a4")
    x_int = torch.cat([x_int] * 3)[:37]  # an odd batch: an unequal last slice
    reference = run(graph, x_int, fast=False).tensors
    parallel = run(graph, x_int).tensors
    assert torch.get_num_threads() == 2  # the run leaves the thread setting alone
    assert set(parallel) == set(reference)
    for name in reference:
        assert torch.equal(parallel[name], reference[name]), name
    outputs_only = run(graph, x_int, keep="outputs").tensors
    assert set(outputs_only) == set(graph.outputs)
    for name in graph.outputs:
        assert torch.equal(outputs_only[name], reference[name])


def test_keep_must_name_a_known_choice() -> None:
    _, graph, _, x_int = lowered("cnn", "w8a8")
    with pytest.raises(ConversionError, match="keep must be 'all' or 'outputs'"):
        run(graph, x_int[:2], keep="some")
