"""The Tensor core: creation, dtypes, attributes, conversions, views, printing."""

from __future__ import annotations

import numpy as np
import pytest

import runba

ALL_DTYPES = [
    runba.float32,
    runba.float64,
    runba.float16,
    runba.int32,
    runba.int64,
    runba.bool,
    runba.uint8,
]


# ---------------------------------------------------------------------------- tensor()
@pytest.mark.parametrize(
    "data,dtype",
    [
        ([1, 2, 3], runba.int64),
        ([1.0, 2.0], runba.float32),
        ([1, 2.5], runba.float32),
        ([True, False], runba.bool),
        ([True, 2], runba.int64),
        (3, runba.int64),
        (3.5, runba.float32),
        (True, runba.bool),
        ([[1, 2], [3, 4]], runba.int64),
        ([2**40], runba.int64),
        # numpy scalars and arrays in a sequence keep their dtype, promoted (PyTorch)
        ([np.float64(1.0), 2], runba.float64),
        ([[np.float64(1.0)], [2.0]], runba.float64),
        ([np.float32(1.0), 2], runba.float32),
        ([np.int32(1), 2], runba.int64),
        ([np.int32(1), np.int32(2)], runba.int32),
        ([np.uint8(3), True], runba.uint8),
        ([np.array([1.0, 2.0]), [3.0, 4.0]], runba.float64),
    ],
)
def test_tensor_dtype_inference(data, dtype):
    t = runba.tensor(data)
    assert t.dtype is dtype
    np.testing.assert_array_equal(t.numpy(), np.array(data))


@pytest.mark.parametrize(
    "np_dtype,dtype",
    [
        (np.float64, runba.float64),
        (np.float32, runba.float32),
        (np.float16, runba.float16),
        (np.int32, runba.int32),
        (np.int64, runba.int64),
        (np.uint8, runba.uint8),
        (np.bool_, runba.bool),
    ],
)
def test_tensor_from_numpy_keeps_numpy_dtype_and_copies(np_dtype, dtype):
    a = np.array([1, 0, 1], dtype=np_dtype)
    t = runba.tensor(a)
    assert t.dtype is dtype
    a[0] = 0
    assert t.tolist()[0] == 1  # tensor() copies


def test_tensor_default_dtype_follows_set_default_dtype():
    try:
        runba.set_default_dtype(runba.float64)
        assert runba.tensor([1.5]).dtype is runba.float64
        assert runba.zeros(2).dtype is runba.float64
        assert runba.arange(0.0, 1.0, 0.5).dtype is runba.float64
        assert repr(runba.tensor([1.5])) == "tensor([1.5000])"
        assert repr(runba.tensor([1.5], dtype=runba.float32)) == (
            "tensor([1.5000], dtype=runba.float32)"
        )
    finally:
        runba.set_default_dtype(runba.float32)
    assert runba.tensor([1.5]).dtype is runba.float32
    with pytest.raises(TypeError):
        runba.set_default_dtype(runba.int64)


def test_tensor_explicit_dtype_and_from_tensor():
    t = runba.tensor([1, 2], dtype=runba.float32)
    assert t.dtype is runba.float32 and t.tolist() == [1.0, 2.0]
    assert runba.tensor([1.5], dtype="float64").dtype is runba.float64
    src = runba.ones(2)
    c = runba.tensor(src, requires_grad=True)
    assert c.requires_grad and not src.requires_grad
    c.detach()[0] = 5.0
    assert src.tolist() == [1.0, 1.0]


def test_tensor_rejects_bad_data():
    with pytest.raises(ValueError):
        runba.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        runba.tensor("abc")
    with pytest.raises(TypeError, match="complex64"):
        runba.from_numpy(np.zeros(2, dtype=np.complex64))


def test_nested_list_of_tensors():
    t = runba.tensor([runba.tensor([1.0, 2.0]), runba.tensor([3.0, 4.0])])
    assert t.shape == (2, 2) and t.tolist() == [[1.0, 2.0], [3.0, 4.0]]


# ---------------------------------------------------------------------------- sharing memory
def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = runba.from_numpy(a)
    assert t.dtype is runba.float32 and t.shape == (2, 3)
    a[0, 0] = 100.0
    assert t.tolist()[0][0] == 100.0
    t[1, 2] = -5.0
    assert a[1, 2] == -5.0
    t.add_(1.0)
    assert a[0, 0] == 101.0
    assert np.shares_memory(t.numpy(), a)


def test_from_numpy_keeps_strides_of_a_view():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    t = runba.from_numpy(a)
    assert t.shape == (3, 2) and t.tolist() == a.tolist()
    a[2, 1] = -1
    assert t.tolist()[2][1] == -1


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError):
        runba.from_numpy([1, 2])


def test_numpy_shares_memory_with_tensor():
    t = runba.zeros(3)
    a = t.numpy()
    a[1] = 7.0
    assert t.tolist() == [0.0, 7.0, 0.0]
    t[0] = 3.0
    assert a[0] == 3.0


def test_as_tensor_shares_memory_when_it_can():
    a = np.zeros(3, dtype=np.float32)
    t = runba.as_tensor(a)
    a[0] = 1.0
    assert t.tolist()[0] == 1.0
    t2 = runba.as_tensor(a, dtype=runba.float64)  # needs a cast: a copy
    a[1] = 2.0
    assert t2.dtype is runba.float64 and t2.tolist()[1] == 0.0
    x = runba.ones(2)
    assert runba.as_tensor(x) is x
    assert runba.as_tensor([1, 2]).dtype is runba.int64


# ---------------------------------------------------------------------------- factories
@pytest.mark.parametrize("factory,value", [(runba.zeros, 0), (runba.ones, 1)])
def test_zeros_ones(factory, value):
    for args in [(2, 3), ((2, 3),), ([2, 3],)]:
        t = factory(*args)
        assert t.shape == (2, 3) and t.dtype is runba.float32
        assert np.all(t.numpy() == value)
    assert factory(2, dtype=runba.int32).dtype is runba.int32
    assert factory(()).shape == () and factory(()).dim() == 0
    assert factory(0, 4).numel() == 0
    t = factory(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_factory_size_errors():
    with pytest.raises(RuntimeError, match="negative dimension"):
        runba.zeros(-1)
    with pytest.raises(TypeError):
        runba.zeros(2.5)
    with pytest.raises(RuntimeError, match="cuda"):
        runba.zeros(2, device="cuda")


def test_empty_and_likes():
    e = runba.empty(2, 3, dtype=runba.float64)
    assert e.shape == (2, 3) and e.dtype is runba.float64
    src = runba.ones(2, 2, dtype=runba.int32)
    assert runba.empty_like(src).dtype is runba.int32
    assert runba.empty_like(src).shape == (2, 2)
    assert runba.zeros_like(src).tolist() == [[0, 0], [0, 0]]
    assert runba.ones_like(src, dtype=runba.float64).dtype is runba.float64
    f = runba.full_like(src, 7)
    assert f.dtype is runba.int32 and f.tolist() == [[7, 7], [7, 7]]
    assert runba.zeros_like(runba.ones(3), requires_grad=True).requires_grad


@pytest.mark.parametrize(
    "value,dtype", [(7, runba.int64), (7.5, runba.float32), (True, runba.bool)]
)
def test_full_infers_dtype_from_value(value, dtype):
    t = runba.full((2, 2), value)
    assert t.dtype is dtype
    assert np.all(t.numpy() == value)
    assert runba.full((3,), 1.5, dtype=runba.float64).dtype is runba.float64


@pytest.mark.parametrize(
    "args,kwargs,expected,dtype",
    [
        ((5,), {}, [0, 1, 2, 3, 4], runba.int64),
        ((1, 10, 3), {}, [1, 4, 7], runba.int64),
        ((5, 0, -1), {}, [5, 4, 3, 2, 1], runba.int64),
        ((10, 0, -3), {}, [10, 7, 4, 1], runba.int64),
        ((1, 0), {}, [], runba.int64),
        ((5.0,), {}, [0.0, 1.0, 2.0, 3.0, 4.0], runba.float32),
        ((0, 1, 0.25), {}, [0.0, 0.25, 0.5, 0.75], runba.float32),
        ((1, 2.5, 0.5), {}, [1.0, 1.5, 2.0], runba.float32),
        ((0.0, -1.0, -0.25), {}, [0.0, -0.25, -0.5, -0.75], runba.float32),
        ((3,), {"dtype": runba.float64}, [0.0, 1.0, 2.0], runba.float64),
    ],
)
def test_arange(args, kwargs, expected, dtype):
    t = runba.arange(*args, **kwargs)
    assert t.dtype is dtype
    np.testing.assert_allclose(t.numpy(), np.array(expected, dtype=np.float64).reshape(-1))
    assert t.shape == (len(expected),)


def test_arange_length_is_ceil_and_step_zero_raises():
    assert runba.arange(0, 1, 0.1).shape == (10,)
    assert runba.arange(0, 1, 0.3).shape == (4,)
    assert runba.arange(-3, 3, 2).tolist() == [-3, -1, 1]
    with pytest.raises(RuntimeError):
        runba.arange(0, 5, 0)


def test_linspace():
    t = runba.linspace(0, 1, 5)
    assert t.dtype is runba.float32
    np.testing.assert_allclose(t.numpy(), [0.0, 0.25, 0.5, 0.75, 1.0])
    t = runba.linspace(-1, 1, 3, dtype=runba.float64)
    assert t.dtype is runba.float64 and t.tolist() == [-1.0, 0.0, 1.0]
    assert runba.linspace(2, 3, 1).tolist() == [2.0]
    assert runba.linspace(0, 1, 0).shape == (0,)


def test_eye():
    np.testing.assert_array_equal(runba.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(runba.eye(2, 3).numpy(), np.eye(2, 3))
    assert runba.eye(2).dtype is runba.float32
    assert runba.eye(2, dtype=runba.int64).dtype is runba.int64


def test_random_factories_shapes_and_dtypes():
    assert runba.rand(2, 3).shape == (2, 3) and runba.rand(2, 3).dtype is runba.float32
    assert runba.randn((4,)).shape == (4,)
    assert runba.randn(2, dtype=runba.float64).dtype is runba.float64
    assert runba.randint(0, 5, (2, 2)).dtype is runba.int64
    assert runba.randperm(5).dtype is runba.int64
    assert runba.rand(3, requires_grad=True).requires_grad
    assert runba.rand_like(runba.ones(2, 2, dtype=runba.float64)).dtype is runba.float64
    assert runba.randn_like(runba.ones(3)).shape == (3,)
    with pytest.raises(RuntimeError, match="floating point"):
        runba.rand(2, dtype=runba.int64)
    with pytest.raises(RuntimeError, match="floating point"):
        runba.randn(2, dtype=runba.int32)


def test_normal_and_uniform_inplace_fill():
    runba.manual_seed(0)
    t = runba.zeros(10_000).normal_(5.0, 0.5)
    assert abs(t.numpy().mean() - 5.0) < 0.05
    assert abs(t.numpy().std() - 0.5) < 0.05
    u = runba.zeros(10_000).uniform_(3.0, 4.0)
    assert u.numpy().min() >= 3.0 and u.numpy().max() < 4.0


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_roundtrips(dtype):
    t = runba.tensor([0, 1, 1], dtype=dtype)
    assert t.dtype is dtype
    assert t.numpy().dtype == dtype.np
    assert t.element_size() == dtype.np.itemsize
    assert t.is_floating_point() == (dtype in (runba.float16, runba.float32, runba.float64))
    assert t.tolist() == [0, 1, 1]


def test_dtype_aliases():
    assert runba.float is runba.float32
    assert runba.double is runba.float64
    assert runba.half is runba.float16
    assert runba.long is runba.int64
    assert runba.int is runba.int32
    assert repr(runba.float32) == "runba.float32"


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (runba.int32, runba.int64, runba.int64),
        (runba.uint8, runba.int32, runba.int32),
        (runba.bool, runba.uint8, runba.uint8),
        (runba.float16, runba.float32, runba.float32),
        (runba.int64, runba.float16, runba.float16),
        (runba.float32, runba.float64, runba.float64),
    ],
)
def test_promote_types(a, b, expected):
    assert runba.promote_types(a, b) is expected
    assert runba.promote_types(b, a) is expected


def test_promotion_with_scalars_and_zero_dim():
    i32 = runba.tensor([1, 2], dtype=runba.int32)
    assert (i32 + 1).dtype is runba.int32
    assert (i32 + 2.5).dtype is runba.float32
    assert (i32 + runba.tensor(1)).dtype is runba.int32  # zero-dim int64 does not widen
    # a zero-dim operand of a higher category decides the type (PyTorch's rule)
    assert (i32 + runba.tensor(1.0, dtype=runba.float64)).dtype is runba.float64
    assert (runba.tensor([1.0]) + runba.tensor(1.0, dtype=runba.float64)).dtype is runba.float32
    assert (runba.tensor([True]) + True).dtype is runba.bool
    assert (runba.tensor([True]) + 1).dtype is runba.int64
    assert (runba.tensor([1], dtype=runba.uint8) + runba.tensor([1], dtype=runba.int32)).dtype is (
        runba.int32
    )


def test_float16_storage_compute_in_float32():
    h = runba.tensor([1.0, 2.0], dtype=runba.float16)
    assert (h * h).dtype is runba.float16
    assert (h + 1.5).dtype is runba.float16
    assert h.exp().dtype is runba.float16
    assert h.exp().numpy().dtype == np.float16
    # a float16 accumulator would overflow at 120000; float32 compute gives 60000
    big = runba.tensor([60000.0, 60000.0, -60000.0], dtype=runba.float16)
    s = big.sum()
    assert s.dtype is runba.float16 and s.item() == 60000.0
    # the result of one primitive is rounded once, from float32
    v = runba.tensor([0.1, 0.2, 0.3], dtype=runba.float16)
    expected = (v.numpy().astype(np.float32) * np.float32(3.0)).astype(np.float16)
    np.testing.assert_array_equal((v * 3.0).numpy(), expected)
    assert (h + runba.tensor([1.0])).dtype is runba.float32


def test_int_division_gives_float():
    t = runba.tensor([1, 2, 3])
    assert (t / 2).dtype is runba.float32
    np.testing.assert_allclose((t / 2).numpy(), [0.5, 1.0, 1.5])
    assert (t // 2).dtype is runba.int64


# ---------------------------------------------------------------------------- attributes
def test_shape_size_dim_numel():
    t = runba.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4)
    assert isinstance(t.shape, runba.Size) and isinstance(t.shape, tuple)
    assert repr(t.shape) == "runba.Size([2, 3, 4])"
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.dim() == 3 and t.ndim == 3
    assert t.numel() == 24 and runba.numel(t) == 24
    assert len(t) == 2
    assert t.shape.numel() == 24
    with pytest.raises(IndexError, match="Dimension out of range"):
        t.size(3)
    s = runba.tensor(2.0)
    assert s.shape == () and s.dim() == 0 and s.numel() == 1
    with pytest.raises(TypeError):
        len(s)


def test_device():
    t = runba.zeros(2)
    assert t.device == runba.device("cpu")
    assert t.device == "cpu"
    assert str(t.device) == "cpu"
    assert repr(t.device) == "device(type='cpu')"
    assert t.to("cpu") is t and t.cpu() is t
    with pytest.raises(RuntimeError):
        t.to("cuda")
    with pytest.raises(RuntimeError):
        runba.device("tpu")


def test_item():
    assert runba.tensor(2.5).item() == 2.5
    assert isinstance(runba.tensor(2.5).item(), float)
    assert runba.tensor([7]).item() == 7 and isinstance(runba.tensor([7]).item(), int)
    assert runba.tensor([[True]]).item() is True
    with pytest.raises(RuntimeError, match="2 elements cannot be converted to Scalar"):
        runba.ones(2).item()
    assert float(runba.tensor(1.5)) == 1.5 and int(runba.tensor(3)) == 3


def test_tolist():
    assert runba.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert runba.tensor(5).tolist() == 5
    assert runba.tensor([1.5, 2.0]).tolist() == [1.5, 2.0]
    assert runba.tensor([True, False]).tolist() == [True, False]
    assert type(runba.tensor([1]).tolist()[0]) is int


def test_numpy_on_requires_grad_raises_like_pytorch():
    t = runba.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad"):
        t.numpy()
    with pytest.raises(RuntimeError, match="requires grad"):
        np.asarray(t)
    a = t.detach().numpy()
    assert a.tolist() == [1.0, 1.0]
    assert t.numpy(force=True) is not None


def test_bool_of_tensor():
    assert bool(runba.tensor([1.0]))
    assert not bool(runba.tensor(0))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(runba.ones(2))


def test_iteration_yields_rows():
    rows = list(runba.tensor([[1, 2], [3, 4]]))
    assert [r.tolist() for r in rows] == [[1, 2], [3, 4]]


# ---------------------------------------------------------------------------- conversions
def test_conversion_methods():
    f = runba.tensor([1.7, -1.7, 0.0])
    assert f.double().dtype is runba.float64
    assert f.half().dtype is runba.float16
    assert f.long().tolist() == [1, -1, 0] and f.long().dtype is runba.int64  # truncates
    assert f.int().tolist() == [1, -1, 0] and f.int().dtype is runba.int32
    assert f.bool().tolist() == [True, True, False]
    i = runba.tensor([1, 2])
    assert i.float().dtype is runba.float32 and i.float().tolist() == [1.0, 2.0]
    assert f.half().float().dtype is runba.float32


def test_to_variants():
    t = runba.tensor([1, 2])
    assert t.to(runba.float64).dtype is runba.float64
    assert t.to(dtype=runba.float16).dtype is runba.float16
    assert t.to("cpu", runba.float32).dtype is runba.float32
    assert t.to(runba.ones(1, dtype=runba.float64)).dtype is runba.float64
    assert t.to(runba.int64) is t  # same dtype: no copy
    c = t.to(runba.int64, copy=True)
    assert c is not t and c.tolist() == [1, 2]
    c[0] = 9
    assert t.tolist() == [1, 2]
    with pytest.raises(TypeError):
        t.to(42)


def test_to_keeps_autograd():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(runba.float64)
    assert y.requires_grad and y.grad_fn is not None
    (y * 3).sum().backward()
    assert x.grad.dtype is runba.float32 and x.grad.tolist() == [3.0, 3.0]


# ---------------------------------------------------------------------------- clone / detach
def test_clone_copies_and_keeps_grad():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.requires_grad and c.grad_fn is not None and c.grad_fn.name() == "CloneBackward0"
    assert not np.shares_memory(c.detach().numpy(), x.detach().numpy())
    (c * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]
    p = runba.ones(3)
    q = p.clone()
    q[0] = 5.0
    assert p.tolist() == [1.0, 1.0, 1.0]


def test_detach_shares_storage_and_version():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.numpy(), x.detach().numpy())
    v = x._version_count
    d[0] = 10.0
    assert x.tolist()[0] == 10.0
    assert x._version_count == v + 1  # detach shares the version counter (like PyTorch)


def test_contiguous():
    x = runba.arange(6.0).reshape(2, 3)
    assert x.is_contiguous() and x.contiguous() is x
    t = x.t()
    assert not t.is_contiguous()
    assert t.stride() == (1, 3)
    c = t.contiguous()
    assert c.tolist() == t.tolist()
    assert not np.shares_memory(c.numpy(), x.numpy())


def test_contiguous_result_is_contiguous():
    t = runba.arange(6.0).reshape(2, 3).t().contiguous()
    assert t.is_contiguous() and t.stride() == (2, 1)
    assert t.view(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_requires_grad_():
    x = runba.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        runba.tensor([1, 2]).requires_grad_()
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)


def test_tensor_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        runba.Tensor([1, 2])


# ---------------------------------------------------------------------------- views
def test_views_share_memory_and_version_counter():
    base = runba.zeros(2, 3)
    views = [base[0], base.view(6), base.t(), base[:, 1:], base.reshape(3, 2), base.unsqueeze(0)]
    for v in views:
        assert v._version is base._version
    base.view(6)[4] = 1.0
    assert base.tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    before = base._version_count
    views[3].add_(1.0)  # through a slice view
    assert base._version_count == before + 1
    assert all(v._version_count == before + 1 for v in views)
    assert base.tolist() == [[0.0, 1.0, 1.0], [0.0, 2.0, 1.0]]


def test_copies_have_their_own_version_counter():
    base = runba.zeros(3)
    for c in (base.clone(), base + 0, base[runba.tensor([0, 1])], base.double()):
        assert c._version is not base._version
        c.add_(1.0)
        assert base._version_count == 0
    assert base.tolist() == [0.0, 0.0, 0.0]


def test_view_on_contiguous_and_inference():
    x = runba.arange(24).view(2, 3, 4)
    assert x.view(6, 4).shape == (6, 4)
    assert x.view(-1).shape == (24,)
    assert x.view(2, -1).shape == (2, 12)
    assert x.view((4, 6)).shape == (4, 6)
    p = x.permute(1, 0, 2)  # (3, 2, 4): the last dim stays contiguous
    assert p.view(3, 2, 2, 2).shape == (3, 2, 2, 2)
    assert p.view(3, 2, 2, 2)._version is x._version


def test_view_incompatible_strides_raises_suggesting_reshape():
    t = runba.arange(6.0).view(2, 3).t()
    with pytest.raises(RuntimeError, match=r"view size is not compatible.*\.reshape"):
        t.view(6)
    p = runba.ones(2, 3, 4).permute(1, 0, 2)
    with pytest.raises(RuntimeError, match=r"reshape"):
        p.view(3, 8)
    r = t.reshape(6)  # reshape copies
    assert r.tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert r._version is not t._version


def test_view_wrong_numel_and_two_inferred():
    with pytest.raises(RuntimeError, match=r"shape '\[4\]' is invalid for input of size 6"):
        runba.ones(2, 3).view(4)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        runba.ones(2, 3).view(-1, -1)


# ---------------------------------------------------------------------------- repr
@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: runba.tensor([1, 2, 3]), "tensor([1, 2, 3])"),
        (lambda: runba.tensor([-1, 2, 10]), "tensor([-1,  2, 10])"),
        (lambda: runba.tensor([1.0, 2.0]), "tensor([1., 2.])"),
        (lambda: runba.tensor([1.5, 2.25]), "tensor([1.5000, 2.2500])"),
        (lambda: runba.tensor([1.1234567, -2.0]), "tensor([ 1.1235, -2.0000])"),
        (lambda: runba.tensor([0.1, 100.0]), "tensor([  0.1000, 100.0000])"),
        (lambda: runba.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
        (lambda: runba.tensor([1e10, 1.0]), "tensor([1.0000e+10, 1.0000e+00])"),
        (lambda: runba.tensor([1.0, 2000.0]), "tensor([1.0000e+00, 2.0000e+03])"),
        (lambda: runba.tensor([0.0001, 1.0]), "tensor([1.0000e-04, 1.0000e+00])"),
        (lambda: runba.tensor([float("nan"), 1.0, float("inf")]), "tensor([nan, 1., inf])"),
        (lambda: runba.tensor([1.5, float("nan")]), "tensor([1.5000,    nan])"),
        (lambda: runba.tensor([0.0, 0.0]), "tensor([0., 0.])"),
        (lambda: runba.tensor(3.5), "tensor(3.5000)"),
        (lambda: runba.tensor(3.0), "tensor(3.)"),
        (lambda: runba.tensor(3), "tensor(3)"),
        (lambda: runba.tensor(True), "tensor(True)"),
        (lambda: runba.tensor([True, False]), "tensor([ True, False])"),
        (lambda: runba.tensor([[1.0, 2.0], [3.0, 4.0]]), "tensor([[1., 2.],\n        [3., 4.]])"),
        (
            lambda: runba.ones(2, 1, 2, dtype=runba.int64),
            "tensor([[[1, 1]],\n\n        [[1, 1]]])",
        ),
        (
            lambda: runba.tensor([1.0, 2.0], dtype=runba.float64),
            "tensor([1., 2.], dtype=runba.float64)",
        ),
        (
            lambda: runba.tensor([1.0, 2.5], dtype=runba.float16),
            "tensor([1.0000, 2.5000], dtype=runba.float16)",
        ),
        (lambda: runba.tensor([1, 2], dtype=runba.int32), "tensor([1, 2], dtype=runba.int32)"),
        (lambda: runba.tensor([1, 2], dtype=runba.uint8), "tensor([1, 2], dtype=runba.uint8)"),
        (lambda: runba.zeros(0), "tensor([])"),
        (lambda: runba.zeros(0, dtype=runba.int64), "tensor([], dtype=runba.int64)"),
        (lambda: runba.zeros(2, 0), "tensor([], size=(2, 0))"),
        (
            lambda: runba.arange(2000),
            "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])",
        ),
    ],
)
def test_repr_matches_pytorch(make, expected):
    assert repr(make()) == expected
    assert str(make()) == expected


def test_repr_autograd_suffixes():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    assert repr(x * 2) == "tensor([2., 4.], grad_fn=<MulBackward0>)"
    assert repr((x * 2).sum()) == "tensor(6., grad_fn=<SumBackward0>)"
    assert repr(x + 1) == "tensor([2., 3.], grad_fn=<AddBackward0>)"
    d = runba.tensor([1.0], dtype=runba.float64, requires_grad=True)
    assert repr(d) == "tensor([1.], dtype=runba.float64, requires_grad=True)"
    with runba.no_grad():
        assert repr(x * 2) == "tensor([2., 4.])"


def test_repr_wraps_long_rows_at_80_columns():
    x = runba.arange(10.0) - 4.5  # 10 values of width 7: 8 per line, like PyTorch
    assert repr(x) == (
        "tensor([-4.5000, -3.5000, -2.5000, -1.5000, -0.5000,  0.5000,  1.5000,  2.5000,\n"
        "         3.5000,  4.5000])"
    )


def test_repr_suffix_moves_to_new_line_when_too_long():
    x = (runba.arange(8.0, dtype=runba.float64) + 0.5).reshape(1, 8)
    text = repr(x)
    assert text == (
        "tensor([[0.5000, 1.5000, 2.5000, 3.5000, 4.5000, 5.5000, 6.5000, 7.5000]],\n"
        "       dtype=runba.float64)"
    )


def test_repr_summarises_big_2d():
    x = runba.arange(40 * 40).view(40, 40)
    lines = repr(x).split("\n")
    assert lines[0] == "tensor([[   0,    1,    2,  ...,   37,   38,   39],"
    assert lines[3] == "        ...,"
    assert lines[-1] == "        [1560, 1561, 1562,  ..., 1597, 1598, 1599]])"
    assert len(lines) == 7


def test_format_of_zero_dim_tensor():
    assert f"{runba.tensor(1.23456):.2f}" == "1.23"


def test_numpy_scalar_keeps_its_dtype():
    assert runba.tensor(np.float64(3.0)).dtype is runba.float64
    assert runba.tensor(np.int32(3)).dtype is runba.int32
    assert runba.tensor(3.0).dtype is runba.float32


def test_deepcopy_copies_storage_and_keeps_requires_grad():
    import copy

    x = runba.tensor([1.0, 2.0], requires_grad=True)
    y = copy.deepcopy(x)
    assert y.requires_grad and y.tolist() == [1.0, 2.0]
    with runba.no_grad():
        y.add_(1)
    assert x.tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)


def test_division_by_zero_is_silent_like_torch():
    # a fresh interpreter with every warning an error: pytest's own warning capture would
    # otherwise stand between numpy and runba's filter
    import subprocess
    import sys

    code = (
        "import runba\n"
        "out = runba.tensor([1.0, 0.0, -1.0]) / 0\n"
        "assert out.isinf().tolist() == [True, False, True]\n"
        "assert runba.log(runba.tensor([0.0])).item() == float('-inf')\n"
        "assert (runba.tensor([1e30]) * 1e30).isinf().item()\n"
    )
    r = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("base_dtype", [runba.float64, runba.int64, runba.float32])
def test_new_creation_methods_take_the_tensors_dtype_like_pytorch(base_dtype):
    x = runba.tensor([1, 2], dtype=base_dtype)
    for t, fill in [
        (x.new_zeros(2, 3), 0),
        (x.new_zeros((2, 3)), 0),
        (x.new_ones([2, 3]), 1),
        (x.new_full((2, 3), 7), 7),
    ]:
        assert t.dtype is base_dtype and t.shape == (2, 3)
        np.testing.assert_array_equal(t.numpy(), np.full((2, 3), fill))
    assert x.new_empty(4).shape == (4,) and x.new_empty(4).dtype is base_dtype
    n = x.new_tensor([[3, 4]])
    assert n.dtype is base_dtype and n.tolist() == [[3, 4]]
    assert x.new_full((2,), 2.5, dtype=runba.float32).tolist() == [2.5, 2.5]
    g = x.new_zeros(3, dtype=runba.float32, requires_grad=True)
    assert g.requires_grad and g.dtype is runba.float32
    src = np.array([1.0, 2.0])
    c = x.new_tensor(src)
    src[0] = 9.0
    assert c.tolist()[0] == 1  # a copy
