"""Valid/ready pipeline registers with backpressure (spec 9 stream rules).

A chain of ``n`` register stages between an upstream and a downstream stream (Amaranth
``lib.stream`` rules: a transfer happens on a clock edge where valid and ready are both
high; the payload is held while valid and not ready). Each stage takes a new beat when it
is empty or its own beat leaves in the same cycle (``ready = ~valid | next_ready``), so the
chain runs at one beat per cycle, never drops or duplicates a beat, and has a latency of
``n`` cycles. ``n = 0`` is a plain wire.

:func:`add_pipeline` builds the registers inline in a parent module (one Verilog module,
no hierarchy); :class:`PipelineRegister` wraps the same logic as a stand-alone component.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, ShapeLike, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelineRegister", "add_pipeline"]


def _check_stages(stages: int) -> None:
    if isinstance(stages, bool) or not isinstance(stages, int):
        raise TypeError(f"stages must be an int, got {stages!r}")
    if stages < 0:
        raise ValueError(f"stages must be >= 0, got {stages}")


def add_pipeline(
    m: Module, payload_shape: ShapeLike, stages: int, *, name: str = "pipe"
) -> tuple[stream.Interface, stream.Interface]:
    """Add ``stages`` valid/ready register stages to ``m``; returns ``(sink, source)`` streams.

    The caller drives ``sink.valid``/``sink.payload`` and reads ``sink.ready`` (the upstream
    side), and reads ``source.valid``/``source.payload`` and drives ``source.ready`` (the
    downstream side). Only the valid bits are reset; payload registers are reset-less.
    """
    _check_stages(stages)
    Shape.cast(payload_shape)  # raises TypeError for a non-shape
    sig = stream.Signature(payload_shape)
    sink = sig.create(path=(name, "sink"))
    source = sig.create(path=(name, "source"))
    valid, ready, payload = sink.valid, sink.ready, sink.payload
    for n in range(stages):
        reg_valid = Signal(name=f"{name}_s{n}_valid")
        reg_payload = Signal(payload_shape, name=f"{name}_s{n}_payload", reset_less=True)
        next_ready = Signal(name=f"{name}_s{n}_next_ready")
        # This stage takes a beat when empty or when its own beat leaves this cycle.
        m.d.comb += ready.eq(~reg_valid | next_ready)
        with m.If(ready):
            m.d.sync += reg_valid.eq(valid)
        with m.If(valid & ready):
            m.d.sync += reg_payload.eq(payload)
        valid, ready, payload = reg_valid, next_ready, reg_payload
    m.d.comb += [
        source.valid.eq(valid),
        ready.eq(source.ready),
        source.payload.eq(payload),
    ]
    return sink, source


class PipelineRegister(wiring.Component):
    """``stages`` valid/ready register stages carrying a payload of ``payload_shape``.

    Members: ``i`` (``In(stream.Signature(payload_shape))``) and ``o``
    (``Out(stream.Signature(payload_shape))``). Latency ``stages`` cycles, initiation
    interval 1.
    """

    def __init__(self, payload_shape: ShapeLike, *, stages: int = 1) -> None:
        _check_stages(stages)
        Shape.cast(payload_shape)
        self.payload_shape = payload_shape
        self.stages = stages
        super().__init__({
            "i": In(stream.Signature(payload_shape)),
            "o": Out(stream.Signature(payload_shape)),
        })

    @property
    def latency(self) -> int:
        return self.stages

    def elaborate(self, platform) -> Module:
        m = Module()
        sink, source = add_pipeline(m, self.payload_shape, self.stages, name="stage")
        wiring.connect(m, wiring.flipped(self.i), wiring.flipped(sink))
        wiring.connect(m, source, wiring.flipped(self.o))
        return m
