"""Round-trip property of the encoder (issue 14), exhaustive: for every preset, decode every (header,
code) and encode the result again; where the format can represent it, the same header and codes come
back. In the golden model (every preset, every selection policy) and in the RTL encoder: in the Amaranth
simulator, and on Icarus and Verilator through the compiled fast path (verif/fast.py) with random gaps and
backpressure (nxfp4 on Icarus by default; Verilator and every other preset under ``-m slow``).

"Can represent it": each block holds, beside the codes under test, the largest magnitude of its (candidate,
option) pair, which pins the scale (spec 5.2); the INT clamp code (-2.0 in MXINT8) is never produced
(spec 2.2); non-finite element codes are skipped; with recycling, zero is the +0 code. When another pair
also represents the block exactly (ties go to the lowest selector, then option, spec 5.4), the re-encoded
block must decode to exactly the same values (signs of zero included) and use a pair that comes first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS
from nxfp_hw.golden.quantize import QuantizedTensor, dequantize_exact, quantize
from nxfp_hw.golden.select import SELECT_POLICIES, select_metric

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def roundtrip_blocks(fmt, float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every valid header with every representable code of its pair: ``(headers (n,), codes (n, k))``.
    ``float32``: only blocks whose decoded values are all exact float32 numbers (the RTL's inputs)."""
    k = fmt.k
    sv = fmt.scale.code_values()
    headers, codes = [], []
    for sc in range(fmt.scale.max_code + 1):
        if not np.isfinite(sv[sc]):
            continue
        for c in range(len(fmt.elements)):
            for j in range(max(fmt.recycle_options, 1)):
                table = fmt.element_table(c, j)
                elem = fmt.elements[c]
                ok = [i for i in range(table.size) if np.isfinite(table[i])
                      and not (elem.is_int and i == 1 << (elem.width - 1))]
                top = max(ok, key=lambda i: (abs(table[i]), -i))  # pins the scale
                h = int(fmt.make_header(sc, c, j))
                for start in range(0, len(ok), k - 1):
                    part = ok[start:start + k - 1]
                    block = [top, *part] + [top] * (k - 1 - len(part))
                    if float32:
                        vals = table[block] * sv[sc]
                        with np.errstate(over="ignore"):
                            exact = np.all(vals.astype(np.float32).astype(np.float64) == vals)
                        if not exact:
                            continue
                    headers.append(h)
                    codes.append(block)
    return np.array(headers, dtype=np.uint16), np.array(codes, dtype=np.uint16)


def decoded(fmt, headers, codes) -> np.ndarray:
    q = QuantizedTensor(fmt, (len(headers), fmt.k), headers[:, None], codes[:, None, :])
    return dequantize_exact(q).reshape(-1, fmt.k)


def check_roundtrip(fmt, headers, codes, h2, c2) -> None:
    """Same header and codes, or (a tie between pairs) the same values from a pair that comes first."""
    y = decoded(fmt, headers, codes)
    same = (h2 == headers) & np.all(c2 == codes, axis=1)
    if same.all():
        return
    y2 = decoded(fmt, h2, c2)
    _, sel, rec = fmt.split_header(headers.astype(np.int64))
    _, sel2, rec2 = fmt.split_header(h2.astype(np.int64))
    equal = np.all((y2 == y) & (np.signbit(y2) == np.signbit(y)), axis=1)
    earlier = (sel2 < sel) | ((sel2 == sel) & (rec2 < rec))
    bad = np.nonzero(~same & ~(equal & earlier))[0]
    if len(bad):
        n = bad[0]
        raise AssertionError(
            f"{fmt.label}: {len(bad)} of {len(headers)} blocks do not round-trip; first: header {headers[n]:#x} "
            f"codes {codes[n].tolist()}\n values {y[n].tolist()}\n re-encoded header {h2[n]:#x} codes "
            f"{c2[n].tolist()}")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_golden_roundtrip(name):
    fmt = PRESETS[name]
    headers, codes = roundtrip_blocks(fmt)
    y = decoded(fmt, headers, codes)
    many = len(fmt.elements) * max(fmt.recycle_options, 1) > 1
    policies = ["float64", *(select_metric(fmt, p) for p in SELECT_POLICIES if many)] if many else ["float64"]
    if not many:
        policies.append(select_metric(fmt))
    for metric in dict.fromkeys(policies):
        q = quantize(y, fmt, metric=metric)
        check_roundtrip(fmt, headers, codes, q.headers.reshape(-1), q.codes.reshape(-1, fmt.k))


@pytest.mark.parametrize("name, select", [
    ("nxfp4", None), pytest.param("nxfp4", "hits", marks=pytest.mark.slow),
    pytest.param("mxfp4_e2m1", None, marks=pytest.mark.slow),
    pytest.param("nxfp5", None, marks=pytest.mark.slow), pytest.param("nxfp6", None, marks=pytest.mark.slow),
    pytest.param("mxfp6_e2m3", None, marks=pytest.mark.slow), pytest.param("mxfp6_e3m2", None, marks=pytest.mark.slow),
    pytest.param("nxfp6", "hits", marks=pytest.mark.slow),
])
def test_rtl_roundtrip(name, select):
    """The RTL encoder (8 lanes, default pipeline) on every block of :func:`roundtrip_blocks` that float32 holds."""
    from test_rtl_encode import simulate

    from nxfp_hw.rtl.encode import EncodeUnit

    fmt = PRESETS[name]
    headers, codes = roundtrip_blocks(fmt, float32=True)
    y = decoded(fmt, headers, codes).astype(np.float32)
    dut = EncodeUnit(fmt, lanes=8, select=select)
    h2, c2 = simulate(dut, y.view(np.uint32))
    q = quantize(y, fmt, metric=select_metric(fmt, select))  # the RTL is bit-exact to its golden policy
    assert (h2 == q.headers.reshape(-1)).all() and (c2 == q.codes.reshape(-1, fmt.k)).all()
    check_roundtrip(fmt, headers, codes, h2.astype(np.uint16), c2.astype(np.uint16))


# nxfp4 on Icarus by default; its Verilator build (a minute) and the other presets under -m slow
SIM_PRESETS = [("nxfp4", "icarus"), pytest.param("nxfp4", "verilator", marks=pytest.mark.slow)] + [
    pytest.param(name, sim, marks=pytest.mark.slow)
    for name in ("mxfp4_e2m1", "mxfp6_e2m3", "mxfp6_e3m2", "nxfp5", "nxfp6") for sim in ("icarus", "verilator")]


@pytest.mark.parametrize("name, sim", SIM_PRESETS)
def test_rtl_roundtrip_on_simulators(name, sim):
    """The generated encoder (8 lanes, default policy and pipeline) on Icarus and Verilator: every block of
    :func:`roundtrip_blocks` that float32 holds comes back as the golden model says, and round-trips."""
    import os

    from verif.fast import run_fast
    from verif.regression import env_seed, prepare_module
    from verif.vectors import encode_vectors

    seed = env_seed(14)
    build_root = Path(os.environ.get("NXFP_SIM_BUILD", Path(__file__).resolve().parents[1] / "build" / "sim"))
    print(f"test_rtl_roundtrip_on_simulators[{name}-{sim}]: seed {seed} (set NXFP_SEED to override)")
    fmt = PRESETS[name]
    headers, codes = roundtrip_blocks(fmt, float32=True)
    y = decoded(fmt, headers, codes).astype(np.float32)
    module = prepare_module("encode", fmt, lanes=8, build_root=build_root.resolve(), input_format="fp32")
    res = run_fast(module, encode_vectors(fmt, y, 8), sim, seed=seed, build_root=build_root.resolve(),
                   tag=f"roundtrip-{name}")
    assert res.passed, res.message
    got = np.asarray(res.got, dtype=np.int64).reshape(len(headers), 1 + fmt.k)
    assert res.stats["input_gaps"] > 0 and res.stats["output_stalls"] > 0
    check_roundtrip(fmt, headers, codes, got[:, 0].astype(np.uint16), got[:, 1:].astype(np.uint16))
