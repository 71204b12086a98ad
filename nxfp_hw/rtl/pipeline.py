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

from amaranth.hdl import Module, Shape, ShapeLike, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Cuts", "PipelineRegister", "PipelineSpec", "add_pipeline", "cuts_tag", "resolve_cuts"]


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


# --- named register positions (docs/timing.md) -------------------------------------------------------
PipelineSpec = int | str | tuple[str, ...] | list[str] | None


def resolve_cuts(pipeline: PipelineSpec, positions: tuple[str, ...], preference: tuple[str, ...],
                 default: tuple[str, ...]) -> tuple[str, ...]:
    """The enabled register positions of a unit, in datapath order.

    ``positions`` are the unit's register positions in datapath order; ``preference`` is the
    order in which registers are added when ``pipeline`` is a count (the most useful cut first);
    ``default`` is used when ``pipeline`` is None. ``pipeline`` may be a count (the first ``n``
    positions of ``preference``), ``"none"``, ``"all"``, a comma-separated string of position
    names, or a sequence of names. ``ValueError`` names the argument and lists the positions.
    """
    listing = ", ".join(positions) if positions else "(none)"
    if pipeline is None:
        chosen: set[str] = set(default)
    elif isinstance(pipeline, bool):
        raise TypeError(f"pipeline: expected a register count or position names, got {pipeline!r}")
    elif isinstance(pipeline, int):
        if not 0 <= pipeline <= len(preference):
            raise ValueError(f"pipeline: expected a register count in 0..{len(preference)} or position names "
                             f"({listing}), got {pipeline}")
        chosen = set(preference[:pipeline])
    else:
        if isinstance(pipeline, str):
            text = pipeline.strip()
            if text.isdigit():
                return resolve_cuts(int(text), positions, preference, default)
            if text == "none" or text == "":
                names: list[str] = []
            elif text == "all":
                names = list(positions)
            else:
                names = [n.strip() for n in text.split(",")]
        elif isinstance(pipeline, tuple | list) and all(isinstance(n, str) for n in pipeline):
            names = list(pipeline)
        else:
            raise TypeError(f"pipeline: expected a register count or position names, got {pipeline!r}")
        unknown = [n for n in names if n not in positions]
        if unknown:
            raise ValueError(f"pipeline: no register position {unknown[0]!r} in this unit; its positions are: "
                             f"{listing} (or a count, 'none', 'all')")
        chosen = set(names)
    return tuple(p for p in positions if p in chosen)


def cuts_tag(cuts: tuple[str, ...], positions: tuple[str, ...]) -> str:
    """Short, stable module-name tag of the enabled positions: ``p`` + hex bit mask in datapath order."""
    mask = sum(1 << i for i, p in enumerate(positions) if p in cuts)
    return f"p{mask:x}"


class Cuts:
    """Optional pipeline registers at named positions, all moving on one ``advance`` enable.

    ``cut(name, valid, fields)`` returns ``(valid, fields)`` unchanged when ``name`` is not
    enabled, else registered copies: the valid bit moves on every ``advance``, the fields load on
    ``advance & valid`` (reset-less). Used by units with a global stall (``advance = ~o.valid |
    o.ready``) so that a beat is never dropped or duplicated.
    """

    def __init__(self, m: Module, advance, enabled: tuple[str, ...]) -> None:
        self.m = m
        self.advance = advance
        self.enabled = frozenset(enabled)
        self.used: list[str] = []

    def __contains__(self, name: str) -> bool:
        return name in self.enabled

    def cut(self, name: str, valid, fields: dict) -> tuple:
        """Register ``valid`` and ``fields`` (name -> Value) at position ``name`` if enabled."""
        self.used.append(name)
        if name not in self.enabled:
            return valid, fields
        m = self.m
        v = Signal(name=f"{name}_valid")
        with m.If(self.advance):
            m.d.sync += v.eq(valid)
        out = {}
        for key, val in fields.items():
            reg = Signal(Value.cast(val).shape(), name=f"{name}_{key}", reset_less=True)
            with m.If(self.advance & valid):
                m.d.sync += reg.eq(val)
            out[key] = reg
        return v, out
