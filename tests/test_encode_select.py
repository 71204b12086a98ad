"""Selection policies of the block encoder (nxfp_hw.golden.select, EncodeUnit(select=...)): each policy
bit-exact between the golden model and the RTL (Amaranth simulator, random gaps and backpressure),
its definition checked against an independent per-block reference, and bad policies refused.

Seeds: NXFP_SEED overrides; every random test prints the seed it used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from nxfp_hw.formats import PRESETS, parse_format
from nxfp_hw.golden.hw_metric import block_error_hw
from nxfp_hw.golden.quantize import dequantize_exact, quantize
from nxfp_hw.golden.select import DEFAULT_SELECT, SELECT_POLICIES, SelectError, check_select, select_metric
from nxfp_hw.rtl.encode import EncodeUnit

sys.path.insert(0, str(Path(__file__).parent))
from test_rtl_encode import check, directed_blocks, random_blocks  # noqa: E402

SEED = int(os.environ.get("NXFP_SEED", "20251124"))

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def rng_for(test: str) -> np.random.Generator:
    print(f"{test}: seed {SEED} (set NXFP_SEED to change)")
    return np.random.default_rng([SEED, sum(map(ord, test))])


@pytest.mark.parametrize("select, name, lanes, pipeline", [
    ("exact", "nxfp4", 8, "default"),
    ("sq6", "nxfp4", 8, "default"),
    ("abs", "nxfp4", 8, "none"),
    ("hits", "nxfp4", 8, "default"),
    ("hits", "nxfp4,k=8", 8, "none"),
    ("hits", "nxfp4", 4, "rounded,total"),
    ("scaled", "nxfp4", 8, "default"),
    ("scaled", "nxfp6", 4, "none"),
    ("scaled", "nxfp5,k=8", 8, "default"),
    pytest.param("hits6", "nxfp4", 8, "default", marks=pytest.mark.slow),  # F and |D| rows: sq6, abs above
    pytest.param("hits-abs", "nxfp4", 8, "default", marks=pytest.mark.slow),
    pytest.param("hits", "nxfp6", 8, "default", marks=pytest.mark.slow),
    pytest.param("abs", "nxfp5", 8, "default", marks=pytest.mark.slow),
])
def test_policy_rtl_matches_golden(select, name, lanes, pipeline):
    rng = rng_for(f"test_policy_rtl_matches_golden[{select}-{name}-{lanes}-{pipeline}]")
    fmt = parse_format(name)
    x = np.concatenate([directed_blocks(fmt, rng), random_blocks(fmt, rng, 24)])
    dut = EncodeUnit(fmt, lanes=lanes, pipeline=None if pipeline == "default" else pipeline, select=select)
    assert dut.select == select and dut.config["metric"] == SELECT_POLICIES[select].metric
    if select != DEFAULT_SELECT:
        assert dut.config["select"] == select and dut.module_name.endswith(f"_s{select.replace('-', '')}")
    check(dut, x, rng)


def test_default_policy_configuration():
    """The default policy (``scaled``) is not named in the module or its configuration; any other is; the
    single-pair (MX) encoders keep the ``hw`` configuration they always had."""
    dut = EncodeUnit(PRESETS["nxfp4"], lanes=8)
    assert dut.select == DEFAULT_SELECT == "scaled"
    assert "select" not in dut.config and dut.config["metric"] == "hw-scaled" and dut.config["metric_frac_bits"] == 7
    # F = element width + 3 (docs/encoder.md): 8 for nxfp5's 5-bit elements, 9 for nxfp6's 6-bit ones
    assert [EncodeUnit(PRESETS[f], lanes=8).config["metric_frac_bits"] for f in ("nxfp5", "nxfp6")] == [8, 9]
    assert EncodeUnit(PRESETS["nxfp4"], lanes=8, select="scaled").module_name == dut.module_name
    exact = EncodeUnit(PRESETS["nxfp4"], lanes=8, select="exact")
    assert exact.module_name == dut.module_name + "_sexact" and exact.config["metric"] == "hw"
    mx = EncodeUnit(PRESETS["mxfp4_e2m1"], lanes=8)
    assert mx.config["metric"] == "hw" and mx.config["metric_frac_bits"] == 8 and "select" not in mx.config


def test_hits_reference():
    """Policy ``hits`` against a per-block reference written from its definition (docs/encoder.md)."""
    rng = rng_for("test_hits_reference")
    fmt = PRESETS["nxfp4"]
    x = random_blocks(fmt, rng, 60).astype(np.float64)
    q = quantize(x, fmt, metric="hw-hits")
    _, sel, rec = fmt.split_header(q.headers.reshape(-1))
    for b in range(x.shape[0]):
        errs, opts = [], []
        for c in range(len(fmt.elements)):
            per_opt = [quantize(x[b:b + 1], parse_format(f"elem={fmt.elements[c].name},scale={fmt.scale.name},"
                                                          f"cr={float(fmt.recycling[c][j])!r}")) for j in range(2)]
            hits = [int(np.sum(p.codes == fmt.elements[c].negative_zero_code)) for p in per_opt]
            opts.append(1 if hits[1] > hits[0] else 0)  # option 0 is +r in the presets
            vals = [dequantize_exact(p) for p in per_opt]
            sym = np.where(np.signbit(x[b:b + 1]), vals[1], vals[0])
            errs.append(block_error_hw(x[b:b + 1], sym)[0])
        c = int(np.argmin(errs))  # first of the least
        assert (int(sel[b]), int(rec[b])) == (c, opts[c]), f"block {b}: {x[b].tolist()}"


@pytest.mark.parametrize("name", ["nxfp4", "nxfp6"])
def test_scaled_reference(name):
    """Policy ``scaled`` against a per-block reference in exact rationals, written from its definition
    (docs/encoder.md): each pair quantized alone; per candidate the symmetric rounding's error in its own
    scale's units plus, for each option, the hits it cannot code (``(delta - |D|)^2`` instead of ``D^2``, or
    ``floor(delta^2 / 2)`` more where ``|R|`` lies above the top level); least ``E u^2``."""
    from fractions import Fraction

    from nxfp_hw.golden.select import scaled_delta_plan, scaled_geometry

    rng = rng_for(f"test_scaled_reference[{name}]")
    fmt = PRESETS[name]
    assert scaled_delta_plan(fmt) == ((0, 1), (0, 1))  # the presets: option 0 holds +R
    x = np.concatenate([random_blocks(fmt, rng, 40), directed_blocks(fmt, rng)[8:12]]).astype(np.float64)
    x = x[np.all(np.isfinite(x), axis=1)]
    q = quantize(x, fmt, metric="hw-scaled")
    F = fmt.element_width + 3  # docs/encoder.md: F is the element width plus 3
    for b in range(x.shape[0]):
        best = None
        for c in range(len(fmt.elements)):
            geo = scaled_geometry(fmt, c)
            dmax = 2**geo.d_width - 1
            r = abs(Fraction(float(fmt.recycling[c][0])))
            opts = []
            for j in range(2):
                pair = parse_format(f"elem={fmt.elements[c].name},scale={fmt.scale.name},"
                                    f"cr={float(fmt.recycling[c][j])!r}")
                pq = quantize(x[b:b + 1], pair)
                field = int(pair.split_header(pq.headers.reshape(-1))[0][0]) >> fmt.scale.mbits
                scale = Fraction(float(pair.scale.code_values()[int(pair.split_header(pq.headers.reshape(-1))[0][0])]))
                vals = [Fraction(float(v)) for v in dequantize_exact(pq).reshape(-1)]
                opts.append((pq, vals, scale, Fraction(2) ** (field - fmt.scale.bias + geo.top_exp - F)))
            unit, scale = opts[0][3], opts[0][2]
            e_sym, extra = 0, [0, 0]  # extra[j]: the hits option j cannot code
            for i, xv in enumerate(x[b]):
                neg = bool(np.signbit(xv))
                mine, other = opts[1 if neg else 0][1][i], opts[0 if neg else 1][1][i]
                xf = min(int(abs(Fraction(xv)) / unit), 2**geo.x_width - 1)
                d = xf - int(abs(mine) / unit)
                dc = min(abs(d), dmax)
                e_sym += dc * dc
                if abs(mine) == r * scale:  # a hit: without R it rounds to `other`
                    low = abs(other) / scale
                    delta = abs(r - low) * scale / unit
                    assert delta.denominator == 1
                    # the metric counts (delta - |D|)^2 for it: its distance to `other` unless beyond |R|
                    if abs(Fraction(xv)) <= r * scale:
                        assert abs(xf - int(abs(other) / unit)) == int(delta) - dc, f"block {b}, element {i}"
                    # ... or, with |R| above the candidate's top level, its expected value delta^2 / 2 (floored)
                    above_top = all(abs(v) < r for v in fmt.elements[c].code_values() if np.isfinite(v))
                    charge = int(delta) ** 2 // 2 if above_top else (int(delta) - dc) ** 2 - dc * dc
                    extra[0 if neg else 1] += charge
            for j in range(2):
                key = (e_sym + extra[j]) * unit * unit
                if best is None or key < best[0]:
                    best = (key, c, j, opts[j][0])
        _, c, j, pq = best
        _, sel, rec = fmt.split_header(q.headers.reshape(-1)[b:b + 1])
        assert (int(sel[0]), int(rec[0])) == (c, j), f"block {b}: {x[b].tolist()}"
        assert np.array_equal(q.codes.reshape(-1, fmt.k)[b], pq.codes.reshape(-1)), f"block {b}"


def test_policy_accuracy_order():
    """On MiniLM-like data each cheaper policy gives away little: within 2 % of ``exact``."""
    rng = rng_for("test_policy_accuracy_order")
    x = (rng.standard_t(4, (256, 32)) * 0.05).astype(np.float32)
    fmt = PRESETS["nxfp4"]
    mse = {}
    for name in SELECT_POLICIES:
        y = dequantize_exact(quantize(x, fmt, metric=select_metric(fmt, name)))
        mse[name] = float(np.mean((y - x) ** 2))
    assert all(v <= mse["exact"] * 1.05 for v in mse.values()), mse


@pytest.mark.parametrize("name, fmt, message", [
    ("best", "nxfp4", "--select: unknown selection policy 'best'; choose from exact, sq6, abs, hits, hits6, hits-abs"),
    ("exact", "mxfp4_e2m1", "--select exact: format mxfp4_e2m1 has one element candidate and no recycling"),
    ("hits", "elem=E2M1|E1M2,scale=UE5M1", "--select hits: policy 'hits' chooses between recycling options, "
                                           "and format .* has none"),
    ("hits", "elem=E2M1|E1M2,scale=UE5M1,cr=5.0", "has a single fixed R"),
])
def test_bad_select(name, fmt, message):
    with pytest.raises(SelectError, match=message):
        check_select(name, parse_format(fmt))
    with pytest.raises(ValueError, match=message.replace("--select", "select")):
        EncodeUnit(parse_format(fmt), lanes=8, select=name)


@pytest.mark.parametrize("argv, message", [
    (["generate", "--unit", "encode", "-f", "nxfp4", "--select", "best"], "--select: unknown selection policy 'best'"),
    (["generate", "--unit", "decode", "-f", "nxfp4", "--select", "hits"], "--select: only the encoder selects"),
    (["area", "--unit", "encode", "-f", "mxfp4_e2m1", "--flow", "generic", "--select", "exact"],
     "--select exact: format mxfp4_e2m1 has one element candidate"),
    (["verify", "--unit", "encode", "-f", "elem=E2M1|E1M2,scale=UE5M1", "--select", "hits"],
     "--select hits: policy 'hits' chooses between recycling options"),
    (["verify", "--unit", "dot", "-f", "nxfp4", "--select", "hits"], "--select: only for --unit encode"),
    (["quantize", "-f", "nxfp4", "-i", "{x}", "-o", "{out}", "--select", "l2"], "--select: unknown selection policy"),
    (["quantize", "-f", "mxfp4_e2m1", "-i", "{x}", "-o", "{out}", "--select", "hits"], "nothing to select"),
])
def test_cli_bad_select(argv, message, tmp_path, capsys):
    """One message naming --select, exit status 2, no output written."""
    from nxfp_hw.cli import main

    np.save(tmp_path / "x.npy", np.zeros((2, 32), np.float32))
    out = tmp_path / "out"
    argv = [a.format(x=tmp_path / "x.npy", out=out / "q.npz") for a in argv]
    if argv[0] in ("generate",):
        argv += ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_cli_quantize_select(tmp_path, capsys):
    """``nxfp-hw quantize --select`` writes the hardware encoder's choice, bit for bit."""
    from nxfp_hw.cli import main

    rng = rng_for("test_cli_quantize_select")
    x = (rng.standard_t(3, (16, 64)) * 0.1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["quantize", "-f", "nxfp4", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "q.npz"),
                 "--select", "hits"]) == 0
    q = quantize(x, PRESETS["nxfp4"], metric="hw-hits")
    with np.load(tmp_path / "q.npz") as z:
        assert (z["headers"] == q.headers).all() and (z["codes"] == q.codes).all()


def test_report_section(tmp_path):
    """The report's policy table, pick and plot from a recorded benchmark (select_report.policy_section)."""
    import json

    from nxfp_hw.flows.select_report import policy_rows, policy_section

    area = {"mxfp4_e2m1:-": {"area_um2": 600.0, "fmax_mhz": 250.0},
            "nxfp4:exact": {"area_um2": 1600.0, "fmax_mhz": 230.0},
            "nxfp4:sq6": {"area_um2": 1400.0, "fmax_mhz": 235.0},
            "nxfp4:hits": {"area_um2": 1200.0, "fmax_mhz": 230.0},
            "nxfp4:scaled": {"area_um2": 1500.0, "fmax_mhz": 220.0}}
    acc = {"nxfp4": {"minilm": {"float64": 1.0, "mx": 1.5, "exact": 1.001, "sq6": 1.004, "hits": 1.02,
                                "scaled": 1.002},
                     "activation": {"float64": 1.0, "mx": 1.5, "exact": 1.0, "sq6": 1.005, "hits": 1.002,
                                    "scaled": 1.003}}}
    rows = policy_rows(["nxfp4"], ["exact", "sq6", "hits", "scaled"], area, acc)
    assert rows[1]["area_vs_mx"] == pytest.approx(1400 / 600) and rows[2]["area_saved"] == pytest.approx(0.25)
    record = tmp_path / "encoder.json"
    record.write_text(json.dumps({"rows": rows}))
    data, md, files = policy_section(tmp_path, record)
    assert data["recommended"] == {"nxfp4": "sq6"} and data["default"] == "scaled"
    assert "| nxfp4 | `hits` | 1,200 | 2.00 | 25.0 % |" in md and "for nxfp4, `sq6`" in md
    # sq6 is smaller than the default here, so the default is not called the smallest
    assert "The default is `scaled`: it stays within 1 % on every format and tensor (nxfp4 2.50x" in md
    if files:
        assert files == [tmp_path / "select.png"] and files[0].stat().st_size > 0
    none, md, files = policy_section(tmp_path, tmp_path / "missing.json")
    assert none is None and "bench_encoder.py" in md and files == []


@pytest.mark.parametrize("name", ["nxfp4", "nxfp5", "nxfp6", "elem=E2M1|E1M2,scale=E8M0,k=32,rule=ocp"])
def test_shared_shift_covers_every_block(name):
    """One alignment shifter per lane serves every candidate (EncodeUnit._plan_shared_shift): each group's
    shift relative to group 0 must lie in the planned range for every block. ``scale_fields`` enumerates the
    classes of ``amax``; here random ``amax`` over the whole float32 range, and the exact thresholds with
    their float neighbours, are scored by the golden scale rule itself, independently of that enumeration."""
    from nxfp_hw.golden.quantize import _round_table, _scale_ceil, _scale_ocp

    fmt = PRESETS[name] if name in PRESETS else parse_format(name)
    dut = EncodeUnit(fmt, lanes=8)
    plan = dut._shared
    assert plan is not None, "every preset with two candidates shares one shifter"
    rng = rng_for(f"test_shared_shift_covers_every_block[{name}]")
    amax = np.ldexp(rng.uniform(1.0, 2.0, 200_000), rng.integers(-149, 128, 200_000))
    sf = fmt.scale
    groups = list(dut._round_groups.items())
    tables = [_round_table(fmt, c, 0) for (c, _), _ in groups]
    edges = np.concatenate([sf.code_values()[: sf.max_code + 1] * t.max_elem for t in tables])
    edges = edges[np.isfinite(edges) & (edges > 0) & (edges < 3.4e38)]
    amax = np.concatenate([amax, edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf), [0.0]])
    rule = _scale_ocp if fmt.rule == "ocp" else _scale_ceil
    fields = [rule(fmt, amax, t) >> sf.mbits for t in tables]
    const = [frac + dut._extra_bits(c) for (c, _), (frac, _, _) in groups]
    for g in range(1, len(groups)):
        s = plan["top"] - ((const[g] - const[0]) - (fields[g] - fields[0]))  # the right shift of group g
        assert plan["smin"][g] <= s.min() and s.max() <= plan["smax"][g], (g, s.min(), s.max(), plan)
        assert plan["z_width"] >= plan["widths"][g] + s.max()
