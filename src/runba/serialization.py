"""Checkpoints without pickle: :func:`save` / :func:`load` in the safetensors byte format.

File layout (the safetensors format, written and read by our own codec)::

    8 bytes      N, the header length, unsigned little-endian
    N bytes      UTF-8 JSON header, padded with spaces to a multiple of 8:
                 {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
                  ...,
                  "__metadata__": {"<str>": "<str>", ...}}
    rest         the tensors' raw little-endian bytes; offsets are relative to the start of
                 this region, which every tensor covers exactly (no holes, no overlaps)

dtypes: F32 F64 F16 I32 I64 BOOL U8. Tensors are laid out by decreasing item size, so each
one starts at an offset aligned to its item size.

Nested objects (a model's state dict, an optimizer's ``state`` with int keys and
``param_groups`` list, an epoch number, an RNG state tensor) are stored as:

* every tensor under a readable flattened name: the path's keys joined with dots
  (``"model.conv1.weight"``, ``"optimizer.state.0.exp_avg"``). A flat state dict therefore
  gives exactly the names a safetensors reader expects. Names only need to be unique: when two
  paths flatten to the same string (``{"a.b": x, "a": {"b": y}}``) later ones get a ``#1``
  suffix;
* the exact structure in ``__metadata__["runba.tree"]``, a JSON document that records every
  container and key (string or int keys, lists vs tuples) and points at tensors by name, so
  the object comes back exactly as it was saved, whatever its keys contain. Non-tensor values
  (None, bool, int, float incl. nan/inf, str) live in this tree too.

A plain safetensors file (no ``runba.tree``, e.g. written by the ``safetensors`` package)
loads as a flat ``{name: tensor}`` dict.

Loading checks everything in the file and raises :class:`CheckpointError` (a ``ValueError``)
for any malformed content; errors opening the file (``FileNotFoundError`` ...) are ``OSError``.

>>> import os, tempfile, runba
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
>>> ckpt = {"model": {"w": runba.ones(2, 3)}, "epoch": 3, "groups": [{"lr": 0.1}]}
>>> runba.save(ckpt, path)
>>> back = runba.load(path)
>>> back["epoch"], back["groups"], back["model"]["w"].shape
(3, [{'lr': 0.1}], runba.Size([2, 3]))
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import sys

import numpy as np

from runba import creation as _creation
from runba.tensor import Tensor, device

__all__ = ["save", "load", "CheckpointError"]

FORMAT_VERSION = "1"
MAX_HEADER_SIZE = 100_000_000  # the safetensors package's limit
_TREE_KEY = "runba.tree"
_VERSION_KEY = "runba.format"

# safetensors dtype code <-> (runba dtype name, little-endian numpy dtype)
_CODES = {
    "F64": ("float64", np.dtype("<f8")),
    "F32": ("float32", np.dtype("<f4")),
    "F16": ("float16", np.dtype("<f2")),
    "I64": ("int64", np.dtype("<i8")),
    "I32": ("int32", np.dtype("<i4")),
    "U8": ("uint8", np.dtype("u1")),
    "BOOL": ("bool", np.dtype("u1")),
}
_CODE_OF = {name: code for code, (name, _) in _CODES.items()}


class CheckpointError(ValueError):
    """A checkpoint file is malformed (bad header, offsets, dtype, data or structure)."""


# ----------------------------------------------------------------------------- save
def save(obj, f) -> None:
    """Save tensors, or nested dicts/lists/tuples of tensors and JSON-able values, to ``f``.

    ``f`` is a path (written atomically: a temporary file in the same folder is written,
    flushed, fsynced and renamed over the target, so a crash leaves the old file intact) or a
    binary file object. Values may be runba tensors, numpy arrays, dicts (str or int keys),
    lists, tuples, None, bool, int, float and str. Tensors are stored by value (two entries
    that share memory are saved, and loaded, as two tensors).

    >>> import io, runba
    >>> buf = io.BytesIO()
    >>> runba.save({"w": runba.zeros(2), 1: ("a", None)}, buf)
    >>> _ = buf.seek(0)
    >>> runba.load(buf)
    {'w': tensor([0., 0.]), 1: ('a', None)}
    """
    arrays: list[tuple[str, str, np.ndarray]] = []  # (name, code, contiguous LE array)
    names: set[str] = set()
    tree = _encode(obj, [], arrays, names, "")
    meta = {
        "format": "pt",
        _VERSION_KEY: FORMAT_VERSION,
        _TREE_KEY: json.dumps(tree, allow_nan=False, separators=(",", ":")),
    }
    header, blobs = _layout(arrays, meta)
    if hasattr(f, "write"):
        _write_all(f, header, blobs)
        return
    # through a symlink: replace the file it points to, keep the link
    _atomic_write(os.path.realpath(os.fspath(f)), header, blobs)


def _encode(obj, path, arrays, names, where):
    if isinstance(obj, Tensor):
        return {"T": _add_array(obj.detach().numpy(), obj.dtype.name, path, arrays, names, where)}
    if isinstance(obj, np.ndarray):
        return {"A": _add_array(obj, str(obj.dtype), path, arrays, names, where)}
    if obj is None or isinstance(obj, (bool, str)):
        return {"v": obj}
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return {"v": int(obj)}
    if isinstance(obj, np.bool_):
        return {"v": bool(obj)}
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return {"v": x} if math.isfinite(x) else {"f": repr(x)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, np.integer)):
                raise TypeError(
                    f"runba.save: dict keys must be str or int, got {type(k).__name__} key "
                    f"{k!r} at {where or '<root>'!r}"
                )
            k = k if isinstance(k, str) else int(k)
            items.append([k, _encode(v, [*path, str(k)], arrays, names, _join(where, k))])
        return {"d": items}
    if isinstance(obj, (list, tuple)):
        kind = "t" if isinstance(obj, tuple) else "l"
        return {
            kind: [
                _encode(v, [*path, str(i)], arrays, names, _join(where, i))
                for i, v in enumerate(obj)
            ]
        }
    raise TypeError(
        f"runba.save stores tensors, numpy arrays, dicts, lists, tuples, None, bool, int, "
        f"float and str (never pickle); got {type(obj).__name__} at {where or '<root>'!r}"
    )


def _join(where, k):
    return f"{where}.{k}" if where else str(k)


def _add_array(arr, dtype_name, path, arrays, names, where):
    code = _CODE_OF.get(dtype_name)
    if code is None:
        raise TypeError(f"runba.save: unsupported dtype {dtype_name} at {where or '<root>'!r}")
    # np.asarray keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)
    arr = np.asarray(arr, dtype=_CODES[code][1] if code != "BOOL" else np.bool_, order="C")
    name = ".".join(path) or "_"
    if name in names or name == "__metadata__":
        i = 1
        while f"{name}#{i}" in names:
            i += 1
        name = f"{name}#{i}"
    names.add(name)
    arrays.append((name, code, arr))
    return name


def _layout(arrays, meta):
    """The header bytes (length prefix included) and the data blobs in file order."""
    order = sorted(range(len(arrays)), key=lambda i: -arrays[i][2].dtype.itemsize)
    entries, blobs, pos = {}, [], 0
    for i in order:
        name, code, arr = arrays[i]
        entries[name] = {"dtype": code, "shape": list(arr.shape),
                         "data_offsets": [pos, pos + arr.nbytes]}  # fmt: skip
        pos += arr.nbytes
        if arr.nbytes:
            blobs.append(arr)
    entries["__metadata__"] = meta
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, blobs


def _write_all(fh, header, blobs):
    fh.write(header)
    for arr in blobs:
        fh.write(arr.reshape(-1).view(np.uint8).data)


def _atomic_write(path, header, blobs):
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for a plain open()
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_all(fh, header, blobs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sys.platform != "win32":  # make the rename itself durable (best effort)
        try:
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


# ----------------------------------------------------------------------------- load
def load(f, map_location=None, weights_only=True):
    """Load what :func:`save` wrote (or any safetensors file, as a flat dict of tensors).

    ``map_location`` may be None, ``"cpu"``, a :class:`runba.device`, a dict mapping
    location strings (``{"cuda:0": "cpu"}``) or a callable ``fn(tensor, "cpu")`` returning a
    tensor (or None to keep it); only the CPU exists today. ``weights_only`` is accepted for
    PyTorch compatibility: runba never unpickles, so loading is always weights-only.

    Malformed files raise :class:`CheckpointError` and nothing else.

    >>> import io, runba
    >>> buf = io.BytesIO()
    >>> runba.save({"b": runba.tensor([1, 2])}, buf)
    >>> _ = buf.seek(0)
    >>> runba.load(buf, map_location="cpu")["b"]
    tensor([1, 2])
    """
    del weights_only
    if hasattr(f, "read"):
        data = f.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("runba.load: the file object must be opened in binary mode")
        fh = io.BytesIO(data)
        try:
            out = _read(fh, len(data))
        finally:
            fh.close()
    else:
        with open(os.fspath(f), "rb") as fh:
            out = _read(fh, os.fstat(fh.fileno()).st_size)
    return _map(out, map_location)


def _read(fh, size):
    try:
        return _read_checked(fh, size)
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError("checkpoint structure is nested too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"malformed checkpoint: {type(e).__name__}: {e}") from e


def _no_dupes(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise CheckpointError(f"duplicate key {k!r} in the checkpoint header")
        out[k] = v
    return out


def _bad_constant(name):
    raise CheckpointError(f"checkpoint header contains the non-JSON constant {name}")


def _json(text, what):
    try:
        return json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_bad_constant)
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{what} is not valid JSON: {e}") from None


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _read_checked(fh, size):
    if size < 8:
        raise CheckpointError(f"file too short for a safetensors header ({size} bytes)")
    n = int.from_bytes(fh.read(8), "little")
    if n < 2 or n > MAX_HEADER_SIZE or n > size - 8:
        raise CheckpointError(f"bad header length {n} (file size {size} bytes)")
    raw = fh.read(n)
    if len(raw) != n:
        raise CheckpointError("file truncated inside the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"header is not UTF-8: {e}") from None
    if not text.startswith("{"):
        raise CheckpointError("header is not a JSON object")
    header = _json(text, "header")
    if not isinstance(header, dict):
        raise CheckpointError("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    ):
        raise CheckpointError("__metadata__ must map strings to strings")
    data_len = size - 8 - n

    infos = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(
                f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets"
            )
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _CODES:
            raise CheckpointError(f"tensor {name!r}: unsupported dtype {code!r}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"tensor {name!r}: bad shape {shape!r}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(_is_int(o) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= data_len
        ):
            raise CheckpointError(
                f"tensor {name!r}: data_offsets {offs!r} out of range (data is {data_len} bytes)"
            )
        np_dt = _CODES[code][1]
        if math.prod(shape) * np_dt.itemsize != offs[1] - offs[0]:
            raise CheckpointError(
                f"tensor {name!r}: shape {shape} of {code} needs "
                f"{math.prod(shape) * np_dt.itemsize} bytes, data_offsets give "
                f"{offs[1] - offs[0]}"
            )
        infos.append((offs[0], offs[1], name, code, shape))

    pos = 0
    for begin, end, name, _, _ in sorted(infos, key=lambda t: (t[0], t[1])):
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a hole before it"
            raise CheckpointError(f"tensor {name!r}: data_offsets {[begin, end]} {what}")
        pos = end
    if pos != data_len:
        raise CheckpointError(
            f"tensor data covers {pos} bytes but the file holds {data_len} after the header"
        )

    base = 8 + n
    tensors = {}
    for begin, end, name, code, shape in infos:
        rname, np_dt = _CODES[code]
        arr = np.empty(shape, dtype=np_dt)
        if end > begin:
            fh.seek(base + begin)
            got = fh.readinto(memoryview(arr.reshape(-1)).cast("B"))
            if got != end - begin:
                raise CheckpointError(f"tensor {name!r}: file truncated")
        if code == "BOOL":
            if arr.size and arr.max() > 1:
                raise CheckpointError(f"tensor {name!r}: BOOL bytes must be 0 or 1")
            arr = arr.view(np.bool_)
        elif not np_dt.isnative:
            arr = arr.astype(np_dt.newbyteorder("="))
        tensors[name] = (arr, rname)

    if meta is None or _TREE_KEY not in meta:
        return {name: _creation.from_numpy(arr) for name, (arr, _) in tensors.items()}
    version = meta.get(_VERSION_KEY)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"unsupported runba checkpoint format version {version!r}")
    tree = _json(meta[_TREE_KEY], "runba.tree metadata")
    used: set[str] = set()
    obj = _decode(tree, tensors, used)
    if used != set(tensors):
        missing = sorted(set(tensors) - used)[:5]
        raise CheckpointError(f"tensors not referenced by the checkpoint structure: {missing}")
    return obj


def _decode(node, tensors, used):
    if not isinstance(node, dict) or len(node) != 1:
        raise CheckpointError("runba.tree: every node must be a one-key object")
    ((kind, val),) = node.items()
    if kind in ("T", "A"):
        if not isinstance(val, str) or val not in tensors:
            raise CheckpointError(f"runba.tree refers to a missing tensor {val!r}")
        if val in used:
            raise CheckpointError(f"runba.tree refers to tensor {val!r} twice")
        used.add(val)
        arr, _ = tensors[val]
        return _creation.from_numpy(arr) if kind == "T" else arr
    if kind == "v":
        if val is None or isinstance(val, (bool, int, float, str)):
            return val
        raise CheckpointError("runba.tree: a value node must hold a JSON scalar")
    if kind == "f":
        if val not in ("nan", "inf", "-inf"):
            raise CheckpointError(f"runba.tree: bad float {val!r}")
        return float(val)
    if kind in ("l", "t"):
        if not isinstance(val, list):
            raise CheckpointError("runba.tree: a list node must hold a list")
        items = [_decode(v, tensors, used) for v in val]
        return items if kind == "l" else tuple(items)
    if kind == "d":
        if not isinstance(val, list):
            raise CheckpointError("runba.tree: a dict node must hold a list of pairs")
        out = {}
        for pair in val:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise CheckpointError("runba.tree: dict items must be [key, value] pairs")
            k = pair[0]
            if not (isinstance(k, str) or _is_int(k)):
                raise CheckpointError(f"runba.tree: bad dict key {k!r}")
            if k in out:
                raise CheckpointError(f"runba.tree: duplicate dict key {k!r}")
            out[k] = _decode(pair[1], tensors, used)
        return out
    raise CheckpointError(f"runba.tree: unknown node kind {kind!r}")


# ----------------------------------------------------------------------------- map_location
def _map(obj, map_location):
    if map_location is None:
        return obj
    if callable(map_location) and not isinstance(map_location, (str, device)):
        fn = map_location
    else:
        if isinstance(map_location, dict):
            target = map_location.get("cpu", "cpu")
        else:
            target = map_location
        target = device(target) if not isinstance(target, device) else target

        def fn(t, location):
            return t.to(target)

    return _apply(obj, fn)


def _apply(obj, fn):
    if isinstance(obj, Tensor):
        out = fn(obj, "cpu")
        return obj if out is None else out
    if isinstance(obj, dict):
        return {k: _apply(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_apply(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_apply(v, fn) for v in obj)
    return obj
