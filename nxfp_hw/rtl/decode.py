"""Block decode unit: element codes + block header -> IEEE numbers (spec 7, 9).

``value = element(code, selected candidate, recycling option) * scale(header)``: the
element significand is multiplied exactly by the scale's NanoMantissa, then rounded once to
nearest-even into fp32, bf16 or fp16 (:func:`~nxfp_hw.rtl.float_round.round_to_ieee`).
A NaN header or NaN element gives the canonical quiet NaN; Inf elements give signed Inf.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import BlockFormat
from .element_decode import ElementDecoder, HeaderDecoder
from .float_round import IEEE_FORMATS, round_to_ieee
from .pipeline import add_pipeline

__all__ = ["DecodeUnit"]


class DecodeUnit(wiring.Component):
    """Decode ``lanes`` elements of one block per beat (architecture.md "Hardware units").

    Parameters: ``fmt`` (the block format), ``lanes`` (elements per beat, divides ``fmt.k``;
    default ``fmt.k``), ``out`` (``"fp32"``, ``"bf16"`` or ``"fp16"``), ``pipeline`` (register
    stages; 0 is a combinational path with ``o.valid = i.valid`` and ``i.ready = o.ready``).
    The header is sent with every beat.

    Members: ``i`` = ``In(stream.Signature({header, codes[lanes]}))``,
    ``o`` = ``Out(stream.Signature({values[lanes]}))``.
    """

    unit_kind = "decode"
    initiation_interval = 1

    def __init__(self, fmt: BlockFormat, lanes: int | None = None, out: str = "fp32", pipeline: int = 0) -> None:
        if not isinstance(fmt, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(fmt).__name__}")
        if lanes is None:
            lanes = fmt.k
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"lanes must be an int, got {lanes!r}")
        if not 1 <= lanes <= fmt.k or fmt.k % lanes:
            raise ValueError(f"lanes must divide the block size k={fmt.k} (1..{fmt.k}), got {lanes}")
        if out not in IEEE_FORMATS:
            raise ValueError(f"out must be one of {', '.join(IEEE_FORMATS)}, got {out!r}")
        if isinstance(pipeline, bool) or not isinstance(pipeline, int):
            raise TypeError(f"pipeline must be an int, got {pipeline!r}")
        if not 0 <= pipeline <= 16:
            raise ValueError(f"pipeline must be in 0..16 register stages, got {pipeline}")
        self.fmt = fmt
        self.formats = {"a": fmt}
        self.lanes = lanes
        self.out = out
        self.pipeline = pipeline
        self.latency = pipeline
        self.config = {"unit": "decode", "format": fmt.to_string(), "lanes": lanes, "out": out, "pipeline": pipeline}
        self.module_name = f"nxfp_decode_{fmt.ident}_l{lanes}_{out}_p{pipeline}"
        self._elem = ElementDecoder(fmt)
        self._hdr = HeaderDecoder(fmt)
        out_width = IEEE_FORMATS[out].width
        self._in_layout = data.StructLayout({
            "header": fmt.header_bits,
            "codes": data.ArrayLayout(fmt.element_width, lanes),
        })
        self._out_layout = data.StructLayout({"values": data.ArrayLayout(out_width, lanes)})
        # The exact product of one lane before rounding: (-1)^sign * mag * 2^(exp + exp_base).
        self._exp_base = self._elem.exp_base + self._hdr.scale_exp_base
        self._product = data.StructLayout({
            "sign": 1,
            "mag": self._elem.sig_width + fmt.scale.mbits + 1,
            "exp": max(self._elem.exp_width, fmt.scale.ebits) + 1,
            "is_nan": 1,
            "is_inf": 1,
        })
        super().__init__({
            "i": In(stream.Signature(self._in_layout)),
            "o": Out(stream.Signature(self._out_layout)),
        })

    def elaborate(self, platform) -> Module:
        # Every intermediate is a single-driver Signal per lane and field; zero-stage pipelines are
        # plain wires. Shared wide struct Signals (all lanes' products, all lanes' results) made
        # Icarus re-send the whole vector to every lane on each partial update (a few cycles/s).
        m = Module()
        # Stage A: header and element decode, exact significand product (spec 3, 4, 7).
        hdr = self._hdr.decode(m, self.i.payload.header)
        products = []
        for n in range(self.lanes):
            e = self._elem.decode(
                m, self.i.payload.codes[n], selector=hdr.selector, recycle=hdr.recycle, name=f"elem{n}"
            )
            mag = Signal(self._product["mag"].shape, name=f"mag{n}")
            exp = Signal(self._product["exp"].shape, name=f"pexp{n}")
            nan = Signal(name=f"nan{n}")
            m.d.comb += [mag.eq(e.sig * hdr.scale_man), exp.eq(e.exp + hdr.scale_exp), nan.eq(e.is_nan | hdr.scale_nan)]
            products.append(data.View(self._product, Cat(e.sign, mag, exp, nan, e.is_inf)))
        # Optional register between the product and the rounding, the rest after the rounding.
        mid_stages = 1 if self.pipeline >= 2 else 0
        valid, ready = self.i.valid, self.i.ready
        if mid_stages:
            mid_in, mid = add_pipeline(m, data.ArrayLayout(self._product, self.lanes), mid_stages, name="mid")
            m.d.comb += [mid_in.valid.eq(valid), ready.eq(mid_in.ready), mid_in.payload.eq(Cat(products))]
            products = [mid.payload[n] for n in range(self.lanes)]
            valid, ready = mid.valid, mid.ready
        # Stage B: one rounding per lane (spec 7).
        values = [
            round_to_ieee(
                m, sign=p.sign, magnitude=p.mag, exponent=p.exp + self._exp_base, fmt=self.out,
                is_nan=p.is_nan, is_inf=p.is_inf, name=f"rnd{n}",
            )
            for n, p in enumerate(products)
        ]
        if self.pipeline > mid_stages:
            tail_in, tail = add_pipeline(m, self._out_layout, self.pipeline - mid_stages, name="tail")
            m.d.comb += [tail_in.valid.eq(valid), ready.eq(tail_in.ready), tail_in.payload.eq(Cat(values))]
            wiring.connect(m, tail, wiring.flipped(self.o))
        else:
            m.d.comb += [self.o.valid.eq(valid), ready.eq(self.o.ready), self.o.payload.eq(Cat(values))]
        return m
