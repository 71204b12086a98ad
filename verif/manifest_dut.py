"""A cocotb DUT seen only through its JSON manifest (spec 9).

The manifest names the clock, the reset (and its polarity), the two stream interfaces (valid,
ready and payload ports) and, for each payload port, the bit offset and width of every field.
:class:`PayloadLayout` packs named field values into the payload integer and back;
:class:`ManifestDUT` binds those names to the simulator handles. Nothing here knows which unit it
drives: the testbenches pass field names that the manifest defines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FieldSpec", "ManifestDUT", "PayloadLayout", "StreamPorts", "load_manifest_json"]


def load_manifest_json(manifest: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """The manifest as a dict (from a dict or a ``.json`` path)."""
    if isinstance(manifest, Mapping):
        return dict(manifest)
    return json.loads(Path(manifest).read_text())


@dataclass(frozen=True)
class FieldSpec:
    """One payload field: ``count`` elements of ``width`` bits, element ``i`` at ``offset + i * stride``.

    Scalars have ``count = 1`` and are packed/unpacked as plain ints; arrays (``is_array``) as lists.
    """

    name: str
    offset: int
    width: int
    count: int = 1
    stride: int = 0
    is_array: bool = False

    @classmethod
    def from_manifest(cls, f: Mapping[str, Any]) -> FieldSpec:
        name, offset, width = str(f["name"]), int(f["offset"]), int(f["width"])
        if "count" not in f:
            return cls(name, offset, width)
        count = int(f["count"])
        stride = int(f.get("stride", 0)) or width
        elem = int(f["element_width"]) if "element_width" in f else (stride if width == stride * count else width)
        return cls(name, offset, elem, count, stride, True)

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def pack(self, value: int | Sequence[int] | np.ndarray) -> int:
        """The field's bits, already shifted to its offset in the payload."""
        if not self.is_array:
            v = int(value)  # type: ignore[arg-type]
            if not 0 <= v <= self.mask:
                raise ValueError(f"field {self.name!r}: value {v} does not fit {self.width} bits")
            return v << self.offset
        vals = [int(x) for x in np.asarray(value).reshape(-1)]
        if len(vals) != self.count:
            raise ValueError(f"field {self.name!r}: expected {self.count} elements, got {len(vals)}")
        word = 0
        for i, v in enumerate(vals):
            if not 0 <= v <= self.mask:
                raise ValueError(f"field {self.name!r}[{i}]: value {v} does not fit {self.width} bits")
            word |= v << (self.offset + i * self.stride)
        return word

    def unpack(self, word: int) -> int | list[int]:
        if not self.is_array:
            return (word >> self.offset) & self.mask
        return [(word >> (self.offset + i * self.stride)) & self.mask for i in range(self.count)]


class PayloadLayout:
    """Field layout of one payload port, from its manifest ``ports[]`` entry."""

    def __init__(self, port: Mapping[str, Any]):
        self.name = str(port["name"])
        self.width = int(port["width"])
        self.fields: dict[str, FieldSpec] = {}
        for f in port.get("fields", []):
            spec = FieldSpec.from_manifest(f)
            end = spec.offset + (spec.count - 1) * spec.stride + spec.width
            if end > self.width:
                raise ValueError(f"manifest: field {spec.name!r} of port {self.name!r} ends at bit {end}, "
                                 f"beyond the port width {self.width}")
            self.fields[spec.name] = spec

    def __getitem__(self, name: str) -> FieldSpec:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"port {self.name!r} has no field {name!r}; fields: {', '.join(self.fields)}") from None

    def pack(self, values: Mapping[str, Any]) -> int:
        """Payload integer from ``{field: int or sequence}``; fields not given are 0."""
        word = 0
        for name, v in values.items():
            word |= self[name].pack(v)
        return word

    def unpack(self, word: int) -> dict[str, int | list[int]]:
        return {name: f.unpack(word) for name, f in self.fields.items()}

    def pack_many(self, arrays: Mapping[str, np.ndarray]) -> list[int]:
        """Payload integers of ``n`` beats from arrays of shape ``(n,)`` (scalars) or ``(n, count)`` (arrays)."""
        n = len(next(iter(arrays.values())))
        words = [0] * n
        for name, arr in arrays.items():
            spec = self[name]
            a = np.asarray(arr).astype(object if spec.width > 62 else np.int64)
            if a.shape[0] != n:
                raise ValueError(f"field {name!r}: {a.shape[0]} beats, expected {n}")
            if a.size and (a.min() < 0 or a.max() > spec.mask):
                raise ValueError(f"field {name!r}: values must fit {spec.width} bits, got {a.min()}..{a.max()}")
            if spec.is_array:
                if a.shape[1:] != (spec.count,):
                    raise ValueError(f"field {name!r}: expected shape (n, {spec.count}), got {a.shape}")
                shifts = [spec.offset + i * spec.stride for i in range(spec.count)]
                for t, row in enumerate(a.tolist()):
                    w = 0
                    for v, s in zip(row, shifts, strict=False):
                        w |= v << s
                    words[t] |= w
            else:
                for t, v in enumerate(a.reshape(n).tolist()):
                    words[t] |= v << spec.offset
        return words

    def unpack_many(self, words: Sequence[int]) -> dict[str, np.ndarray]:
        """Inverse of :meth:`pack_many`: ``{field: int64 array}``, arrays with a trailing ``count`` axis."""
        out: dict[str, np.ndarray] = {}
        for name, spec in self.fields.items():
            dt = object if spec.width > 62 else np.int64  # fields of any width: Python ints past 62 bits
            if spec.is_array:
                out[name] = np.array([spec.unpack(w) for w in words], dtype=dt).reshape(len(words), spec.count)
            else:
                out[name] = np.array([spec.unpack(w) for w in words], dtype=dt).reshape(len(words))
        return out


@dataclass
class StreamPorts:
    """Handles of one valid/ready stream and the layout of its payload."""

    valid: Any
    ready: Any
    payload: Any
    layout: PayloadLayout


class ManifestDUT:
    """Binds a cocotb ``dut`` handle to the names its manifest gives (clock, reset, streams ``i``/``o``).

    ``formats`` holds the manifest's block formats re-parsed from their canonical format strings
    (``{"a": BlockFormat, ...}``); ``lanes``, ``latency``, ``unit`` come straight from the manifest.
    """

    def __init__(self, dut: Any, manifest: Mapping[str, Any] | str | Path):
        self.manifest = m = load_manifest_json(manifest)
        self.dut = dut
        self.unit = str(m.get("unit", ""))
        self.lanes = int(m.get("lanes", 1))
        self.latency = int(m.get("latency", 0))
        self.initiation_interval = int(m.get("initiation_interval", 1))
        ports = {p["name"]: p for p in m["ports"]}
        self.ports = ports
        self.clk = getattr(dut, m["clock"]["name"])
        rst = m.get("reset") or {}
        self.rst = getattr(dut, rst["name"]) if rst.get("name") else None
        self.rst_active = 0 if str(rst.get("polarity", "high")).lower() in ("low", "active_low", "0") else 1
        self.streams: dict[str, StreamPorts] = {}
        for key, s in m["streams"].items():
            self.streams[key] = StreamPorts(getattr(dut, s["valid"]), getattr(dut, s["ready"]),
                                            getattr(dut, s["payload"]), PayloadLayout(ports[s["payload"]]))
        self._formats: dict[str, Any] | None = None

    @property
    def i(self) -> StreamPorts:
        return self.streams["i"]

    @property
    def o(self) -> StreamPorts:
        return self.streams["o"]

    @property
    def formats(self) -> dict[str, Any]:
        if self._formats is None:
            from nxfp_hw.formats import parse_format

            self._formats = {k: parse_format(v["format_string"]) for k, v in self.manifest.get("formats", {}).items()}
        return self._formats

    def start_clock(self, period_ns: int = 10) -> None:
        """Start a free-running clock on the manifest's clock port."""
        import cocotb
        from cocotb.clock import Clock

        cocotb.start_soon(Clock(self.clk, period_ns, unit="ns").start())

    def idle_inputs(self) -> None:
        """Input valid low, output ready low (call before reset)."""
        self.i.valid.value = 0
        self.i.payload.value = 0
        self.o.ready.value = 0

    async def reset(self, cycles: int = 2) -> None:
        """Hold the reset active for ``cycles`` rising edges (synchronous reset, spec 9 manifest polarity)."""
        from cocotb.triggers import RisingEdge

        if self.rst is None:
            return
        self.rst.value = self.rst_active
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.rst.value = 1 - self.rst_active
