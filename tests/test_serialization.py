"""runba.save / runba.load: safetensors byte format, no pickle, strict loading, atomic writes."""

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import runba
from runba.serialization import CheckpointError, load, save

ALL_DTYPES = [
    runba.float32,
    runba.float64,
    runba.float16,
    runba.int32,
    runba.int64,
    runba.bool,
    runba.uint8,
]
CODES = {"float32": "F32", "float64": "F64", "float16": "F16", "int32": "I32", "int64": "I64",
         "bool": "BOOL", "uint8": "U8"}  # fmt: skip


def _sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if dtype is runba.bool:
        arr = rng.random(shape) < 0.5
    elif dtype.is_floating_point:
        arr = rng.standard_normal(shape).astype(dtype.np)
    else:
        arr = rng.integers(0, 200, shape).astype(dtype.np)
    return runba.from_numpy(np.asarray(arr))


def _assert_same(a, b):
    """Exact structural equality; tensors compared by dtype, shape and bytes."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, runba.Tensor):
        assert a.dtype is b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _roundtrip(obj, tmp_path, name="ckpt.safetensors"):
    path = tmp_path / name
    save(obj, path)
    return load(path)


def _checkpoint():
    return {
        "model": {
            "conv1.weight": _sample(runba.float32, (4, 1, 3, 3)),
            "conv1.bias": _sample(runba.float32, (4,), 1),
            "bn.num_batches_tracked": runba.tensor(7),
        },
        "optimizer": {
            "state": {0: {"step": runba.tensor(3.0), "exp_avg": _sample(runba.float32, (4,))}},
            "param_groups": [
                {
                    "lr": 1e-3,
                    "betas": (0.9, 0.999),
                    "eps": 1e-8,
                    "params": [0, 1],
                    "amsgrad": False,
                    "foreach": None,
                    "name": "base",
                }
            ],
        },
        "epoch": 5,
        "rng_state": runba.get_rng_state(),
    }


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 3), (2, 3, 4)])
def test_roundtrip_dtypes_and_shapes(tmp_path, dtype, shape):
    t = _sample(dtype, shape)
    back = _roundtrip({"t": t}, tmp_path)
    _assert_same({"t": t}, back)


def test_roundtrip_checkpoint_structure(tmp_path):
    ckpt = _checkpoint()
    _assert_same(ckpt, _roundtrip(ckpt, tmp_path))


def test_roundtrip_tricky_keys_and_values(tmp_path):
    a, b, c = _sample(runba.float32, (2,)), _sample(runba.int64, (2,)), _sample(runba.uint8, (1,))
    obj = {
        "a.b": a,                 # flattens to the same name as the nested one below
        "a": {"b": b, 1: c, "1": "string key 1"},
        "": {"": a.clone()},      # empty keys
        "list": [a.clone(), [b.clone(), ("t", None)], []],
        "tuple": (1, 2.5, True, None, "x"),
        "floats": [float("nan"), float("inf"), float("-inf"), -0.0, 1e-300],
        "big": 2**70,
        "unicode é 字": "ü",
        "__metadata__": {"not": "the header's"},
        "np": np.arange(6, dtype=np.int32).reshape(2, 3),
    }  # fmt: skip
    back = _roundtrip(obj, tmp_path)
    _assert_same(obj, back)
    assert isinstance(back["a"], dict) and 1 in back["a"] and "1" in back["a"]
    assert str(back["floats"][3]) == "-0.0"


def test_roundtrip_top_level_values(tmp_path):
    for obj in [_sample(runba.float64, (2, 2)), [1, 2], ("a", _sample(runba.bool, (3,))), 7, None]:
        _assert_same(obj, _roundtrip(obj, tmp_path))


def test_noncontiguous_and_grad_tensors(tmp_path):
    base = _sample(runba.float32, (4, 6))
    views = {
        "t": base.t(),
        "slice": base[:, ::2],
        "perm": _sample(runba.float64, (2, 3, 4)).permute(2, 0, 1),
        "expanded": runba.tensor([1.0, 2.0]).expand(3, 2),
        "grad": runba.ones(3, requires_grad=True),
    }
    assert not views["t"].is_contiguous()
    back = _roundtrip(views, tmp_path)
    for k, v in views.items():
        np.testing.assert_array_equal(back[k].numpy(), v.detach().numpy())
        assert back[k].shape == v.shape and back[k].is_contiguous()
        assert not back[k].requires_grad


def test_loaded_tensors_are_writable_and_independent(tmp_path):
    path = tmp_path / "w.safetensors"
    save({"w": runba.zeros(3), "v": runba.ones(2)}, path)
    out = load(path)
    out["w"].add_(1.0)
    assert out["w"].tolist() == [1.0, 1.0, 1.0] and out["v"].tolist() == [1.0, 1.0]


def test_flat_state_dict_names_are_plain(tmp_path):
    sd = {"fc.weight": runba.ones(2, 2), "fc.bias": runba.zeros(2)}
    path = tmp_path / "sd.safetensors"
    save(sd, path)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0  # header padded to 8 bytes
    header = json.loads(raw[8 : 8 + n])
    assert set(header) == {"fc.weight", "fc.bias", "__metadata__"}
    assert header["fc.weight"] == {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    assert all(isinstance(v, str) for v in header["__metadata__"].values())


def test_file_objects(tmp_path):
    buf = io.BytesIO()
    save(_checkpoint(), buf)
    buf.seek(0)
    _assert_same(_checkpoint(), load(buf))


def test_save_rejects_unsupported_values(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="never pickle"):
        save({"f": object()}, path)
    with pytest.raises(TypeError, match="dict keys"):
        save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="dtype"):
        save({"c": np.zeros(2, np.complex64)}, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_map_location(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"w": runba.ones(2)}, path)
    for loc in ["cpu", runba.device("cpu"), {"cuda:0": "cpu"}, None]:
        assert load(path, map_location=loc)["w"].tolist() == [1.0, 1.0]
    seen = []
    out = load(path, map_location=lambda t, loc: seen.append(loc) or t * 2)
    assert out["w"].tolist() == [2.0, 2.0] and seen == ["cpu"]
    with pytest.raises(RuntimeError, match="not available"):
        load(path, map_location="cuda")
    assert load(path, weights_only=False)["w"].tolist() == [1.0, 1.0]


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.safetensors")


# ----------------------------------------------------------------------------- interop
def test_interop_with_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours = tmp_path / "ours.safetensors"
    sd = {f"p{d.name}": _sample(d, (2, 3)) for d in ALL_DTYPES}
    sd["scalar"] = runba.tensor(2.5)
    sd["empty"] = runba.zeros(0, 4)
    save(sd, ours)
    theirs = st.load_file(str(ours))
    assert set(theirs) == set(sd)
    for k, v in sd.items():
        assert theirs[k].dtype == v.dtype.np and theirs[k].shape == tuple(v.shape)
        np.testing.assert_array_equal(theirs[k], v.numpy())

    written = tmp_path / "theirs.safetensors"
    arrays = {
        "a.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([True, False]),
        "c": np.arange(5, dtype=np.int64),
        "d": np.ones((2, 2), np.float16),
        "e": np.zeros((0,), np.uint8),
    }
    st.save_file(arrays, str(written), metadata={"format": "pt"})
    back = load(written)
    assert isinstance(back, dict) and set(back) == set(arrays)
    for k, v in arrays.items():
        assert isinstance(back[k], runba.Tensor)
        assert back[k].dtype.np == v.dtype
        np.testing.assert_array_equal(back[k].numpy(), v)


def test_nested_checkpoint_is_readable_by_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "ck.safetensors"
    save(_checkpoint(), path)
    flat = st.load_file(str(path))
    assert "model.conv1.weight" in flat and "optimizer.state.0.exp_avg" in flat


# ----------------------------------------------------------------------------- malformed files
def _valid_bytes():
    buf = io.BytesIO()
    obj = _checkpoint()
    obj["misc"] = [runba.tensor([True, False]), runba.tensor([1, 2], dtype=runba.uint8),
                   runba.tensor([1.5], dtype=runba.float16), runba.zeros(0)]  # fmt: skip
    save(obj, buf)
    return buf.getvalue()


def _raw(header: dict, data: bytes = b"", pad=True) -> bytes:
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _rawtext(text: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(text)) + text + data


def _load_bytes(b: bytes):
    return load(io.BytesIO(b))


F32_2 = np.array([1.0, 2.0], np.float32).tobytes()

MALFORMED = {
    "empty file": b"",
    "short length": b"\x01\x00",
    "length beyond file": struct.pack("<Q", 1000) + b"{}",
    "huge length": struct.pack("<Q", 2**63) + b"{}" * 10,
    "zero length": struct.pack("<Q", 0),
    "header not json": struct.pack("<Q", 8) + b"{not js}",
    "header not utf8": struct.pack("<Q", 8) + b"{\xff\xfe   }",
    "header a list": _raw([1, 2]),  # type: ignore[arg-type]
    "unknown dtype": _raw({"x": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}},
                          b"\0\0"),
    "dtype not str": _raw({"x": {"dtype": 3, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "missing field": _raw({"x": {"dtype": "F32", "shape": [2]}}, F32_2),
    "extra field": _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "q": 1}},
                        F32_2),
    "negative dim": _raw({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, F32_2),
    "bool dim": _raw({"x": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, F32_2[:4]),
    "shape/offset mismatch": _raw({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                                  F32_2),
    "offsets reversed": _raw({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}},
                             F32_2),
    "offset out of range": _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
                                F32_2),
    "truncated data": _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                           F32_2[:5]),
    "trailing data": _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                          F32_2 + b"\0" * 8),
    "overlapping": _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32_2),
    "hole": _raw({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, F32_2),
    "duplicate key": _rawtext(
        b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', F32_2),
    "duplicate nested key": _rawtext(
        b'{"x":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', F32_2),
    "metadata not strings": _raw({"__metadata__": {"a": 1}}),
    "NaN constant": _rawtext(b'{"__metadata__": NaN}'),
    "bad bool byte": _raw({"x": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}},
                          b"\x01\x07"),
    "too many dims": _raw({"x": {"dtype": "U8", "shape": [1] * 80, "data_offsets": [0, 1]}},
                          b"\x00"),
    "tree not json": _raw({"__metadata__": {"runba.format": "1", "runba.tree": "{oops"}}),
    "tree unknown node": _raw({"__metadata__": {"runba.format": "1",
                                                "runba.tree": '{"zz": 1}'}}),
    "tree missing tensor": _raw({"__metadata__": {"runba.format": "1",
                                                  "runba.tree": '{"T": "nope"}'}}),
    "tree tensor twice": _raw(
        {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "__metadata__": {"runba.format": "1",
                          "runba.tree": '{"l": [{"T": "x"}, {"T": "x"}]}'}}, F32_2),
    "tree unreferenced tensor": _raw(
        {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "__metadata__": {"runba.format": "1", "runba.tree": '{"v": 1}'}}, F32_2),
    "tree dup dict key": _raw({"__metadata__": {
        "runba.format": "1", "runba.tree": '{"d": [["a", {"v": 1}], ["a", {"v": 2}]]}'}}),
    "tree deep nesting": _raw({"__metadata__": {
        "runba.format": "1", "runba.tree": '{"l": [' * 5000 + "]}" * 5000}}),
    "tree future version": _raw({"__metadata__": {"runba.format": "99",
                                                  "runba.tree": '{"v": 1}'}}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_raise_checkpoint_error(name, tmp_path):
    data = MALFORMED[name]
    with pytest.raises(CheckpointError):
        _load_bytes(data)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load(path)


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_good_file_loads_so_malformed_cases_are_meaningful():
    # the same hand-built layout, well-formed, loads: the cases above fail for their defect
    ok = _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32_2)
    assert _load_bytes(ok)["x"].tolist() == [1.0, 2.0]
    unpadded = _raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32_2, False)
    assert _load_bytes(unpadded)["x"].tolist() == [1.0, 2.0]


def test_byte_mutation_fuzz():
    """Random byte flips / truncations / insertions of a valid checkpoint: either a clean load
    or CheckpointError, never another exception."""
    good = _valid_bytes()
    n_header = struct.unpack("<Q", good[:8])[0] + 8
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for case in range(240):
        b = bytearray(good)
        kind = case % 4
        if kind == 0:  # flip inside the header (where structure lives)
            i = rng.randrange(n_header)
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # random byte anywhere
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        elif kind == 2:  # truncation
            b = b[: rng.randrange(len(b))]
        else:  # a header byte replaced by a JSON-significant character
            i = rng.randrange(8, n_header)
            b[i] = ord(rng.choice('{}[]",:0123456789-. '))
        try:
            _load_bytes(bytes(b))
            outcomes["ok"] += 1
        except CheckpointError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50 and outcomes["ok"] > 0, outcomes


# ----------------------------------------------------------------------------- atomic writes
def _old_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save({"w": runba.ones(3)}, path)
    return path


@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_crash_during_save_keeps_old_file(tmp_path, monkeypatch, target):
    path = _old_file(tmp_path)

    def boom(*args, **kwargs):
        raise OSError(f"simulated crash in os.{target}")

    monkeypatch.setattr(os, target, boom)
    with pytest.raises(OSError, match="simulated crash"):
        save({"w": runba.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temp file left behind
    assert load(path)["w"].tolist() == [1.0, 1.0, 1.0]


def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    import runba.serialization as ser

    real = ser._write_all

    def partial(fh, header, blobs):
        fh.write(header[:5])
        raise KeyboardInterrupt  # even a BaseException cleans up

    monkeypatch.setattr(ser, "_write_all", partial)
    with pytest.raises(KeyboardInterrupt):
        save({"w": runba.zeros(10)}, path)
    monkeypatch.setattr(ser, "_write_all", real)
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert load(path)["w"].tolist() == [1.0, 1.0, 1.0]


def test_sigkill_during_save_keeps_old_file(tmp_path):
    """A process killed mid-write: the old checkpoint is intact (a stale temp may remain)."""
    path = _old_file(tmp_path)
    script = textwrap.dedent(
        f"""
        import os, sys, runba
        import runba.serialization as ser
        real = ser._write_all
        def slow(fh, header, blobs):
            fh.write(header)
            fh.write(b"x" * 1000)
            fh.flush()
            print("writing", flush=True)
            sys.stdin.readline()  # the parent kills us here
            real(fh, header, blobs)
        ser._write_all = slow
        ser.save({{"w": runba.zeros(1_000_000)}}, {str(path)!r})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        temps = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        assert len(temps) == 1  # the write goes to a temp file in the same folder
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    # a fresh save succeeds next to the stale temp and replaces the file
    save({"w": runba.zeros(2)}, path)
    assert load(path)["w"].tolist() == [0.0, 0.0]


def test_save_overwrites_atomically_and_keeps_permissions(tmp_path):
    path = _old_file(tmp_path)
    save({"w": runba.full((2,), 5.0)}, path)
    assert load(path)["w"].tolist() == [5.0, 5.0]
    assert os.listdir(tmp_path) == ["model.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_save_through_symlink_keeps_link(tmp_path):
    real = tmp_path / "real.safetensors"
    save({"w": runba.ones(1)}, real)
    link = tmp_path / "link.safetensors"
    link.symlink_to(real)
    save({"w": runba.zeros(1)}, link)
    assert link.is_symlink() and load(real)["w"].tolist() == [0.0]
