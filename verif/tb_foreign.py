"""cocotb testbench of a foreign unit: drives the adapter nxfp-hw generated around it (verif/foreign.py).

Everything comes from a plan file (``NXFP_TB_PLAN``, JSON, written by :func:`verif.foreign.verify`):
the port names and widths, the timing model, the clock and reset, and one flat input value per port
per transaction. The testbench only drives and records; the launching process compares (any width,
don't-care masks, golden views and policies) after the run. Timing models:

- ``combinational``: apply a transaction, let it settle (1 ns), read every output;
- ``fixed_latency`` without strobes: a new transaction every cycle; the outputs of transaction ``t``
  are read in the cycle ``t + latency`` (written right after a rising edge, sampled in the read-only
  phase after the falling edge, as verif/stream.py does);
- ``fixed_latency`` with ``valid_in``/``valid_out``: random idle cycles (junk inputs, ``valid_in``
  low) between transactions; ``valid_out`` must rise exactly ``latency`` cycles after each accepted
  transaction and never otherwise (a protocol error names the cycle);
- ``stream``: valid/ready on both sides (``ready_in``/``ready_out`` optional), random idle cycles and
  random output stalls; outputs are taken in order whenever valid and ready, at any latency.

The output file (``NXFP_TB_OUTPUT``) holds every output port's value per transaction as a hex
string (``null`` for X/Z bits), the simulated cycles and the protocol errors.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import cocotb

PLAN_ENV, OUTPUT_ENV = "NXFP_TB_PLAN", "NXFP_TB_OUTPUT"
CLOCK_NS = 10


def _read(handle: Any) -> int | None:
    v = handle.value
    return int(v) if v.is_resolvable else None


@cocotb.test()
async def foreign_regression(dut: Any) -> None:
    """Every transaction of the plan through the foreign unit; outputs recorded for the launcher."""
    from cocotb.triggers import RisingEdge, Timer

    from .stream import sample_phase

    plan = json.loads(Path(os.environ[PLAN_ENV]).read_text())
    out_path = Path(os.environ[OUTPUT_ENV])
    rng = random.Random(int(plan["seed"]))
    n = int(plan["n"])
    stim = {p: [int(v, 16) for v in vals] for p, vals in plan["stimulus"].items()}
    ins = {p["name"]: getattr(dut, p["name"]) for p in plan["inputs"]}
    widths = {p["name"]: int(p["width"]) for p in plan["inputs"]}
    outs = {p["name"]: getattr(dut, p["name"]) for p in plan["outputs"]}
    got: dict[str, list[str | None]] = {p: [] for p in outs}
    errors: list[str] = []
    dut._log.info("foreign regression: %s, %d transactions, %s, seed %s", plan["top"], n, plan["timing"], plan["seed"])

    def apply(t: int | None) -> None:
        for name, h in ins.items():
            h.value = stim[name][t] if t is not None else rng.getrandbits(widths[name])

    def record() -> None:
        for name, h in outs.items():
            v = _read(h)
            got[name].append(None if v is None else f"{v:x}")

    t0 = time.perf_counter()
    cycles = 0
    if plan["timing"] == "stream":
        cycles = await _stream(dut, plan, rng, apply, record, got, errors)
    elif plan["timing"] == "combinational":
        for t in range(n):
            apply(t)
            await Timer(1, unit="ns")
            record()
            await Timer(1, unit="ns")
    else:
        latency = int(plan["latency"])
        vin = getattr(dut, plan["valid_in"]) if plan.get("valid_in") else None
        vout = getattr(dut, plan["valid_out"]) if plan.get("valid_out") else None
        gap = float(plan.get("gap", 0.0)) if vin is not None else 0.0
        apply(None)
        if vin is not None:
            vin.value = 0
        clk = await _reset_and_clock(dut, plan)
        produces = plan.get("produces")  # which transactions give an output (None: all)
        sent_at: list[int] = []  # cycle of each transaction
        valid_hist: list[bool] = []  # an output is due `latency` cycles after this cycle
        sent_hist: list[bool] = []  # a transaction was driven in this cycle
        t = 0
        cycle = 0
        limit = n * (4 if gap else 1) + latency + 64
        while (t < n or cycle <= (sent_at[-1] if sent_at else 0) + latency) and cycle < limit:
            if t < n and not (gap and rng.random() < gap):
                apply(t)
                if vin is not None:
                    vin.value = 1
                sent_at.append(cycle)
                valid_hist.append(True if produces is None else bool(produces[t]))
                sent_hist.append(True)
                t += 1
            else:
                apply(None)
                if vin is not None:
                    vin.value = 0
                valid_hist.append(False)
                sent_hist.append(False)
            await sample_phase(clk)
            src = cycle - latency
            expect_valid = src >= 0 and valid_hist[src]
            if vout is not None:
                v = _read(vout)
                if v is None or bool(v) != expect_valid:
                    if len(errors) < 10:
                        errors.append(f"cycle {cycle}: {plan['valid_out']} is {'X' if v is None else v}, expected "
                                      f"{int(expect_valid)} ({latency} cycles after "
                                      + ("a transaction" if expect_valid else "a block ending no reduction"
                                         if src >= 0 and sent_hist[src] else "an idle cycle") + ")")
                if v:
                    record()
            elif expect_valid:
                record()
            await RisingEdge(clk)
            cycle += 1
        cycles = cycle
    wall = time.perf_counter() - t0
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"got": got, "cycles": cycles, "wall_seconds": wall, "protocol_errors": errors}))
    tmp.replace(out_path)
    if errors:
        raise AssertionError("handshake out of step: " + "; ".join(errors[:3]))


async def _reset_and_clock(dut: Any, plan: dict[str, Any]) -> Any:
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    clk = getattr(dut, plan["clock"])
    cocotb.start_soon(Clock(clk, CLOCK_NS, unit="ns").start())
    if plan.get("reset"):
        rst = getattr(dut, plan["reset"])
        active = int(plan.get("reset_active", 1))
        rst.value = active
        for _ in range(3):
            await RisingEdge(clk)
        rst.value = 1 - active
    else:
        await RisingEdge(clk)
    return clk


async def _stream(dut: Any, plan: dict[str, Any], rng: random.Random, apply: Any, record: Any,
                  got: dict[str, list], errors: list[str]) -> int:
    """Valid/ready on both sides: random idle cycles before a transaction (never withdrawing an offered one),
    random output stalls; an output is taken on an edge where its valid and ready are high. The unit must
    hold an offered output (valid high, value stable) until it is taken."""
    from cocotb.triggers import RisingEdge

    from .stream import sample_phase

    n, n_out = int(plan["n"]), int(plan.get("n_out", plan["n"]))
    vin = getattr(dut, plan["valid_in"])
    rin = getattr(dut, plan["ready_in"]) if plan.get("ready_in") else None
    vout = getattr(dut, plan["valid_out"])
    rout = getattr(dut, plan["ready_out"]) if plan.get("ready_out") else None
    gap, stall = float(plan.get("gap", 0.0)), float(plan.get("stall", 0.0)) if rout is not None else 0.0
    outs = [getattr(dut, p["name"]) for p in plan["outputs"]]
    apply(None)
    vin.value = 0
    if rout is not None:
        rout.value = 0
    clk = await _reset_and_clock(dut, plan)
    t = 0
    offering = False
    stalled: list[int | None] | None = None  # output values offered but not taken last cycle
    cycle = idle = 0
    patience = 64 + 16 * max(1, int(1 / max(1e-3, 1 - stall)))
    while (t < n or len(next(iter(got.values()), [])) < n_out) and idle < patience:
        if not offering and t < n and not (gap and rng.random() < gap):
            apply(t)
            vin.value = 1
            offering = True
        elif not offering:
            apply(None)
            vin.value = 0
        ready = 1 if rout is None or rng.random() >= stall else 0
        if rout is not None:
            rout.value = ready
        await sample_phase(clk)
        if offering and (rin is None or _read(rin) == 1):
            t += 1
            offering = False  # taken at the coming edge
        v = _read(vout)
        now = [_read(h) for h in outs]
        if stalled is not None and (v != 1 or now != stalled) and len(errors) < 10:
            errors.append(f"cycle {cycle}: {plan['valid_out']} or an output changed while the output was stalled")
        before = len(next(iter(got.values()), []))
        if v == 1 and ready:
            record()
        stalled = now if v == 1 and not ready else None
        idle = 0 if len(next(iter(got.values()), [])) != before or offering else idle + 1
        await RisingEdge(clk)
        cycle += 1
    vin.value = 0
    return cycle
