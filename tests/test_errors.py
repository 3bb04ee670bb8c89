"""Error messages: they name the op and the shapes/dtypes involved, like PyTorch's."""

from __future__ import annotations

import re

import pytest

import runba


def _shape(*dims):
    """A regex matching a shape written as ``[2, 3]`` or ``(2, 3)``."""
    inner = r",\s*".join(str(d) for d in dims)
    return rf"[\[(]{inner}[\])]"


# ---------------------------------------------------------------------------- matmul
@pytest.mark.parametrize(
    "sa,sb,pattern",
    [
        ((2, 3), (4, 5), r"2x3 and 4x5"),
        ((3,), (4,), r"3.*4"),
        ((2, 3, 4), (2, 5, 6), _shape(2, 3, 4) + ".*" + _shape(2, 5, 6)),
        ((3, 2, 3), (4, 3, 2), _shape(3, 2, 3) + ".*" + _shape(4, 3, 2)),
    ],
)
def test_matmul_shape_mismatch_names_both_shapes(sa, sb, pattern):
    with pytest.raises(RuntimeError, match="matmul") as info:
        runba.ones(*sa) @ runba.ones(*sb)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_mm_shape_mismatch():
    with pytest.raises(RuntimeError, match=r"2x3 and 2x3"):
        runba.mm(runba.ones(2, 3), runba.ones(2, 3))


# ---------------------------------------------------------------------------- view / reshape
def test_view_incompatible_strides_message():
    t = runba.ones(2, 3).t()
    with pytest.raises(RuntimeError) as info:
        t.view(6)
    msg = str(info.value)
    assert "view size is not compatible with input tensor's size and stride" in msg
    assert "reshape" in msg
    assert re.search(_shape(3, 2), msg), msg


def test_view_wrong_size_message():
    with pytest.raises(RuntimeError, match=r"shape '\[5\]' is invalid for input of size 6"):
        runba.ones(2, 3).view(5)
    with pytest.raises(RuntimeError, match=r"shape '\[5\]' is invalid for input of size 6"):
        runba.ones(2, 3).reshape(5)


def test_expand_message_names_sizes():
    with pytest.raises(RuntimeError, match=r"expanded size.*\(4\).*existing size \(2\)"):
        runba.ones(2, 3).expand(4, 3)


# ---------------------------------------------------------------------------- broadcasting
def test_broadcast_mismatch_names_op_and_both_shapes():
    for fn, name in [(runba.add, "add"), (runba.mul, "mul")]:
        with pytest.raises(RuntimeError) as info:
            fn(runba.ones(2, 3), runba.ones(4, 3))
        msg = str(info.value)
        assert name in msg, msg
        assert re.search(_shape(2, 3), msg) and re.search(_shape(4, 3), msg), msg


def test_inplace_broadcast_to_smaller_output_message():
    with pytest.raises(RuntimeError, match=r"add_.*\[3\].*\[2, 3\]"):
        runba.ones(3).add_(runba.ones(2, 3))


def test_cat_size_mismatch_message():
    with pytest.raises(RuntimeError, match=r"Sizes of tensors must match except in dimension 0"):
        runba.cat([runba.ones(2, 3), runba.ones(2, 4)])


# ---------------------------------------------------------------------------- dims / indices
def test_dim_out_of_range_message():
    with pytest.raises(IndexError, match=r"Dimension out of range.*\[-2, 1\].*got 2"):
        runba.ones(2, 3).sum(2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        runba.ones(2, 3).transpose(0, 5)


def test_index_out_of_bounds_names_shape():
    with pytest.raises(IndexError, match=r"out of bounds.*\[2, 3\]"):
        runba.ones(2, 3)[5]


# ---------------------------------------------------------------------------- dtypes
def test_requires_grad_on_int_tensor_message():
    with pytest.raises(RuntimeError, match=r"only Tensors of floating point dtype can require"):
        runba.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"int64"):
        runba.ones(2, dtype=runba.int64).requires_grad_()


def test_float_index_tensor_message():
    with pytest.raises(
        IndexError, match=r"tensors used as indices must be long, int, byte or bool"
    ):
        runba.ones(2, 3)[runba.tensor([0.0])]
    with pytest.raises(IndexError, match="float32"):
        runba.ones(2, 3)[runba.tensor([0.0])]
    with pytest.raises(IndexError, match=r"must be long, int, byte or bool"):
        runba.ones(3)[[0.5, 1.0]]


def test_gather_float_index_message():
    with pytest.raises(RuntimeError, match=r"gather.*int64.*float32"):
        runba.ones(2).gather(0, runba.tensor([0.0]))


def test_inplace_result_type_cannot_be_cast_message():
    with pytest.raises(
        RuntimeError, match=r"float32 can't be cast to the desired output type int64"
    ):
        runba.tensor([1, 2]).add_(1.5)


def test_unsupported_numpy_dtype_message():
    import numpy as np

    with pytest.raises(TypeError, match=r"complex128 is not supported.*float32"):
        runba.from_numpy(np.zeros(2, dtype=np.complex128))


# ---------------------------------------------------------------------------- autograd
def test_inplace_on_saved_tensor_message_names_op_and_versions():
    x = runba.ones(3, requires_grad=True)
    a = x * 2
    b = a.sin()  # sin saves its input a
    a.mul_(3.0)
    with pytest.raises(RuntimeError) as info:
        b.sum().backward()
    msg = str(info.value)
    assert "modified by an inplace operation" in msg
    assert "'sin'" in msg and "SinBackward0" in msg
    assert "version 1" in msg and "expected version 0" in msg
    assert "[3]" in msg


def test_backward_twice_message():
    x = runba.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError) as info:
        y.backward()
    msg = str(info.value)
    assert "Trying to backward through the graph a second time" in msg
    assert "retain_graph=True" in msg


def test_non_scalar_backward_message():
    with pytest.raises(
        RuntimeError, match=r"grad can be implicitly created only for scalar.*\[2\]"
    ):
        (runba.ones(2, requires_grad=True) * 2).backward()


def test_leaf_inplace_message():
    x = runba.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"mul_: a leaf Variable that requires grad"):
        x.mul_(2)


def test_numpy_on_requires_grad_message():
    with pytest.raises(RuntimeError, match=r"Use tensor.detach\(\).numpy\(\) instead"):
        runba.ones(2, requires_grad=True).numpy()


def test_item_of_many_elements_message():
    with pytest.raises(
        RuntimeError, match="a Tensor with 6 elements cannot be converted to Scalar"
    ):
        runba.ones(2, 3).item()


def test_unused_input_message():
    x = runba.ones(2, requires_grad=True)
    w = runba.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"input 1.*allow_unused=True"):
        runba.autograd.grad((x * 2).sum(), [x, w])


def test_gather_and_scatter_add_reject_out_of_range_indices():
    x = runba.arange(6.0).reshape(2, 3)
    with pytest.raises(
        RuntimeError, match=r"gather\(\): index -1 is out of bounds for dimension 1"
    ):
        x.gather(1, runba.tensor([[-1], [0]]))
    with pytest.raises(RuntimeError, match=r"scatter_add\(\): index 3 is out of bounds"):
        x.scatter_add(1, runba.tensor([[3], [0]]), runba.ones(2, 1))
