"""Element and header field decode shared by the decode unit and the dot engine (spec 2, 3, 4, 7).

:class:`ElementDecoder` turns one element code into ``(sign, sig, exp)`` with
``|value| = sig * 2^(exp + exp_base)``, ``sig`` an unsigned integer (implicit bit included)
and ``exp`` an unsigned offset from the format's common base ``exp_base`` (a Python int), so
every candidate format and recycled value of a block format share one significand width and
one exponent range. The candidate and the recycling option are runtime Values (header fields).
:func:`decode_header` splits a header into the scale ``man * 2^(exp + scale_exp_base)``, its
NaN flag, the selector and the recycling option.

Widths, biases and field splits come from the format objects; special codes (NaN, Inf) and
recycled values are read from ``fmt.element_table``. Out-of-range selector or recycling
fields select the last defined candidate/option (as the golden model does, docs/golden.md).

The decoders return ``View``s over one single-driver Signal per field (or over header bits),
never a struct Signal assembled from several drivers: Icarus re-sends a whole net to every
reader on each partial update, so such structs multiply events lane by lane (the decode unit
ran at a few cycles per second that way).
"""

from __future__ import annotations

import functools
import operator
from fractions import Fraction

import numpy as np
from amaranth.hdl import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import data

from ..formats import BlockFormat, ElementFormat

__all__ = ["ElementDecoder", "HeaderDecoder", "decode_header"]


def _dyadic(value: float) -> tuple[int, int]:
    """``(odd, t)`` with ``|value| = odd * 2^t`` for a non-zero finite binary value."""
    frac = abs(Fraction(value))
    num, den = frac.numerator, frac.denominator
    tz = (num & -num).bit_length() - 1
    return num >> tz, tz - (den.bit_length() - 1)


def _pick(index: Value, values: list[Value]) -> Value:
    """``values[index]`` as a multiplexer chain (continuous assignments, no processes)."""
    out = values[0]
    for j, v in enumerate(values[1:], start=1):
        out = Mux(index == j, v, out)
    return out


def _fit(value: Value, width: int) -> Value:
    """``value`` zero-extended or truncated to exactly ``width`` bits (wiring only)."""
    value = Value.cast(value).as_unsigned()
    return value[:width] if len(value) >= width else Cat(value, C(0, width - len(value)))


def _pick_fields(index: Value, lanes: list[tuple[Value, ...]]) -> list[Value]:
    """Field by field ``lanes[index]``."""
    return [_pick(index, [Value.cast(lane[k]) for lane in lanes]) for k in range(len(lanes[0]))]


def _any_of(m: Module, code: Value, codes: list[int], name: str) -> Value:
    """``code`` is one of ``codes``, as one named Signal (0 when ``codes`` is empty)."""
    if not codes:
        return Value.cast(0)
    hit = Signal(name=name)
    m.d.comb += hit.eq(functools.reduce(operator.or_, [code == x for x in codes]))
    return hit


def _at_most(sel: Value, options: int) -> Value:
    """``min(sel, options - 1)`` as an index: fields beyond the last option pick the last one."""
    if options <= 1:
        return Value.cast(0)
    return Mux(sel >= options - 1, options - 1, sel)


class ElementDecoder:
    """Combinational decode of one element code of a :class:`BlockFormat` (spec 2, 4).

    Attributes: ``sig_width`` (significand bits), ``exp_width`` (exponent offset bits),
    ``exp_base`` (exponent of ``exp = 0``), ``layout`` (the ``StructLayout`` returned by
    :meth:`decode`: ``sign``, ``sig``, ``exp``, ``is_nan``, ``is_inf``, ``is_zero``).
    Zeros and special codes carry ``sig = 0``; ``sign`` is the code's sign (-0 keeps it).
    """

    def __init__(self, fmt: BlockFormat) -> None:
        if not isinstance(fmt, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(fmt).__name__}")
        self.fmt = fmt
        w = fmt.element_width
        # Significand width of each candidate's own fields, then of the recycled values.
        own = [e.width if e.is_int else e.mbits + 1 for e in fmt.elements]
        recycled = [_dyadic(r) for table in fmt.recycling for r in table]
        self.sig_width = max(own + [odd.bit_length() for odd, _ in recycled])
        # True exponent of the field significand at E = 1 (minifloat) or of the integer (INTn),
        # after aligning every candidate's significand to the common MSB position.
        self._align = [self.sig_width - n for n in own]
        self._exp_low = [
            (-e.int_frac_bits if e.is_int else 1 - e.bias - e.mbits) - a
            for e, a in zip(fmt.elements, self._align, strict=True)
        ]
        self._recycled = [
            [(odd << (self.sig_width - odd.bit_length()), t - (self.sig_width - odd.bit_length()))
             for odd, t in (_dyadic(r) for r in table)]
            for table in fmt.recycling
        ]
        lows = self._exp_low + [exp for table in self._recycled for _, exp in table]
        self.exp_base = min(lows)
        highs = [
            low + (0 if e.is_int else (1 << e.ebits) - 2) for e, low in zip(fmt.elements, self._exp_low, strict=True)
        ] + [exp for table in self._recycled for _, exp in table]
        self.exp_width = max(1, (max(highs) - self.exp_base).bit_length())
        # Special codes straight from the value tables (spec 2.1); recycled codes are finite.
        self._nan_codes: list[list[int]] = []
        self._inf_codes: list[list[int]] = []
        for c in range(len(fmt.elements)):
            table = fmt.element_table(c, 0)
            self._nan_codes.append([int(x) for x in np.flatnonzero(np.isnan(table))])
            self._inf_codes.append([int(x) for x in np.flatnonzero(np.isinf(table))])
        self.layout = data.StructLayout({
            "sign": 1,
            "sig": self.sig_width,
            "exp": self.exp_width,
            "is_nan": 1,
            "is_inf": 1,
            "is_zero": 1,
        })
        self._code_width = w

    def decode(
        self, m: Module, code: Value, *, selector: Value | int = 0, recycle: Value | int = 0, name: str = "elem"
    ) -> data.View:
        """Add the decode of ``code`` under candidate ``selector`` and option ``recycle`` to ``m``.

        Returns a combinational ``View`` of :attr:`layout` named ``name``.
        """
        code = Value.cast(code)
        if len(code) != self._code_width:
            raise TypeError(f"code must be {self._code_width} bits wide for {self.fmt.label}, got {len(code)}")
        fmt = self.fmt
        sel = _at_most(Value.cast(selector), len(fmt.elements))
        opt = _at_most(Value.cast(recycle), max(fmt.recycle_options, 1))
        lanes = [self._candidate(m, c, code, opt, name) for c in range(len(fmt.elements))]
        # One Signal per field, each driven by one expression: a struct Signal assembled from
        # several drivers would re-send all its bits to every reader on each partial update,
        # which multiplies the events an event-driven simulator (Icarus) processes.
        fields = []
        for key, value in zip(self.layout.members, _pick_fields(sel, lanes), strict=True):
            sig = Signal(self.layout[key].shape, name=f"{name}_{key}")
            m.d.comb += sig.eq(value)
            fields.append(sig)
        return data.View(self.layout, Cat(fields))

    def _candidate(self, m: Module, c: int, code: Value, opt: Value, name: str) -> tuple[Value, ...]:
        """Decode under candidate ``c`` alone (spec 2.1, 2.2, 4): the fields of :attr:`layout`."""
        elem: ElementFormat = self.fmt.elements[c]
        w = self._code_width
        nan = _any_of(m, code, self._nan_codes[c], f"{name}_c{c}_nan")
        inf = _any_of(m, code, self._inf_codes[c], f"{name}_c{c}_inf")
        sign = code[w - 1]
        if elem.is_int:
            # Two's complement -> sign and magnitude; the most negative code has magnitude 2^(n-1).
            sig = Signal(w, name=f"{name}_c{c}_mag")
            m.d.comb += sig.eq(Mux(sign, -code, code)[:w])
            exp = Value.cast(self._exp_low[c] - self.exp_base)
        else:
            e_field = code[elem.mbits: elem.mbits + elem.ebits]
            m_field = code[: elem.mbits]
            normal = Signal(name=f"{name}_c{c}_normal")
            m.d.comb += normal.eq(e_field.any())
            sig = Cat(m_field, normal)
            # max(E, 1) - 1 counts from the exponent of E = 1 (subnormals share it).
            exp = Mux(normal, e_field - 1, 0) + (self._exp_low[c] - self.exp_base)
        special = Signal(name=f"{name}_c{c}_special")
        m.d.comb += special.eq(nan | inf)
        field_sig = Mux(special, 0, sig << self._align[c])
        field_exp = Mux(special, 0, exp)
        zero = ~special & (sig == 0)
        if self.fmt.recycling:
            # spec 4: the -0 code carries the recycled value of the selected option.
            is_r = Signal(name=f"{name}_c{c}_recycled")
            m.d.comb += is_r.eq(code == elem.negative_zero_code)
            options = self._recycled[c]
            rsig = _pick(opt, [Value.cast(s) for s, _ in options])
            rexp = _pick(opt, [Value.cast(e - self.exp_base) for _, e in options])
            rneg = _pick(opt, [Value.cast(int(r < 0)) for r in self.fmt.recycling[c]])
            sign = Mux(is_r, rneg, sign)
            field_sig = Mux(is_r, rsig, field_sig)
            field_exp = Mux(is_r, rexp, field_exp)
            zero = ~is_r & zero
        return sign, field_sig, field_exp, nan, inf, zero


class HeaderDecoder:
    """Combinational split of a block header (spec 3, 4, 6).

    ``layout`` fields: ``scale_nan``, ``scale_man`` (``1 + mbits`` bits, the NanoMantissa with
    its implicit one), ``scale_exp`` (the raw exponent field ``E``), ``selector``, ``recycle``.
    The scale value is ``scale_man * 2^(scale_exp + scale_exp_base)``.
    """

    def __init__(self, fmt: BlockFormat) -> None:
        if not isinstance(fmt, BlockFormat):
            raise TypeError(f"fmt must be a BlockFormat, got {type(fmt).__name__}")
        self.fmt = fmt
        self.scale_exp_base = -fmt.scale.bias - fmt.scale.mbits
        self.layout = data.StructLayout({
            "scale_nan": 1,
            "scale_man": fmt.scale.mbits + 1,
            "scale_exp": fmt.scale.ebits,
            "selector": max(fmt.selector_bits, 1),
            "recycle": max(fmt.recycle_bits, 1),
        })

    def decode(self, m: Module, header: Value, *, name: str = "hdr") -> data.View:
        header = Value.cast(header)
        fmt = self.fmt
        if len(header) != fmt.header_bits:
            raise TypeError(f"header must be {fmt.header_bits} bits wide for {fmt.label}, got {len(header)}")

        def field(field_name: str) -> Value:
            f = fmt.field(field_name)
            return header[f.offset: f.offset + f.width] if f else Value.cast(0)

        scale_code = header[: fmt.scale.width]
        scale_nan = Signal(name=f"{name}_scale_nan")
        m.d.comb += scale_nan.eq(scale_code == fmt.scale.nan_code)
        fields = {
            "scale_nan": scale_nan,
            "scale_man": Cat(field("nano_mantissa") if fmt.scale.mbits else Cat(), 1),
            "scale_exp": field("scale_exponent"),
            "selector": field("selector"),
            "recycle": field("recycle"),
        }
        # A view over the header bits themselves: no Signal whose bits come from several drivers.
        return data.View(self.layout, Cat(_fit(value, self.layout[key].width) for key, value in fields.items()))


def decode_header(m: Module, fmt: BlockFormat, header: Value, *, name: str = "hdr") -> data.View:
    """Shorthand for ``HeaderDecoder(fmt).decode(m, header, name=name)``."""
    return HeaderDecoder(fmt).decode(m, header, name=name)
