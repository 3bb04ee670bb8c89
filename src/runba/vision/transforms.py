"""Image transforms, like ``torchvision.transforms``.

Inputs are numpy arrays in HWC or HW layout (uint8 usually), PIL images when Pillow is
installed, or (for :class:`Normalize` and :class:`Resize`) runba tensors in ``(..., C, H, W)``
layout.

>>> import numpy as np
>>> t = Compose([Resize(4), ToTensor(), Normalize((0.5,), (0.5,))])
>>> t(np.zeros((2, 2), dtype=np.uint8)).shape
runba.Size([1, 4, 4])
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

import runba

__all__ = [
    "Compose",
    "ToTensor",
    "Normalize",
    "Resize",
    "Lambda",
    "InterpolationMode",
    "resize",
]


def _is_pil(x) -> bool:
    # A PIL image can only exist once PIL.Image was imported: no import attempt per call.
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(x, mod.Image)


class Compose:
    """Apply transforms one after another.

    >>> Compose([Lambda(lambda x: x + 1), Lambda(lambda x: x * 10)])(1)
    20
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        lines = [f"    {t}" for t in self.transforms]
        return "Compose(\n" + "\n".join(lines) + "\n)"


class ToTensor:
    """HWC (or HW) image -> CHW tensor; uint8 values are scaled to float ``[0, 1]``.

    uint8 input gives the default float dtype (float32) divided by 255; other numpy dtypes
    keep their dtype and values (torchvision's rule). An HW array becomes ``1 x H x W``.

    >>> x = ToTensor()(np.array([[0, 255]], dtype=np.uint8))
    >>> x.shape, x.tolist()
    (runba.Size([1, 1, 2]), [[[0.0, 1.0]]])
    """

    def __call__(self, pic):
        if _is_pil(pic):
            arr = np.asarray(pic)
            if pic.mode == "1":
                arr = arr.astype(np.uint8) * 255
        elif isinstance(pic, np.ndarray):
            arr = pic
        else:
            raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
        if arr.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {arr.ndim} dimensions.")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            fdt = runba.get_default_dtype()
            out = chw.astype(fdt.np.type) / fdt.np.type(255)
            return runba.from_numpy(out.astype(fdt.np.type, copy=False))
        return runba.from_numpy(chw.copy() if np.may_share_memory(chw, arr) else chw)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel of a float tensor of shape ``(..., C, H, W)``.

    >>> x = runba.ones(2, 1, 1)
    >>> Normalize(mean=(0.5, 0.0), std=(0.5, 2.0))(x).flatten().tolist()
    [1.0, 0.5]
    """

    def __init__(self, mean, std, inplace=False):
        self.mean = mean
        self.std = std
        self.inplace = inplace

    def __call__(self, tensor):
        if not isinstance(tensor, runba.Tensor):
            raise TypeError(f"Normalize expects a runba.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
        if tensor.ndim < 3:
            raise ValueError(
                "Expected tensor to be a tensor image of size (..., C, H, W). Got "
                f"tensor.size() = {tuple(tensor.shape)}"
            )
        m, s = self._stats(tensor)
        if self.inplace:
            return tensor.sub_(m).div_(s)
        return (tensor - m) / s

    def _stats(self, tensor):
        key = (tensor.dtype, tensor.shape[-3], repr(self.mean), repr(self.std))
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if (std == 0).any():
            raise ValueError(
                f"std evaluated to zero after conversion to {tensor.dtype}, leading to "
                "division by zero."
            )
        c = tensor.shape[-3]
        for name, v in (("mean", mean), ("std", std)):
            if v.size not in (1, c):
                raise ValueError(f"Normalize: {name} has {v.size} values for {c} channels")
        m = runba.tensor(mean.reshape(-1, 1, 1), dtype=tensor.dtype)
        s = runba.tensor(std.reshape(-1, 1, 1), dtype=tensor.dtype)
        self._cache = (key, (m, s))
        return m, s

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class InterpolationMode:
    """Interpolation names (only bilinear is implemented)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _output_size(h, w, size, max_size):
    """torchvision's rule: an int (or 1-sequence) sets the shorter side, keeping aspect."""
    if isinstance(size, numbers.Integral):
        size = [int(size)]
    size = list(size)
    if len(size) == 2:
        if max_size is not None:
            raise ValueError("max_size is only supported for an int size or a 1-element list")
        return int(size[0]), int(size[1])
    if len(size) != 1:
        raise ValueError(f"size must be an int or a 1 or 2 element sequence, got {size}")
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = int(size[0]), int(size[0] * long / short)
    if max_size is not None:
        if max_size <= new_short:
            raise ValueError(
                f"max_size = {max_size} must be strictly greater than the requested size "
                f"for the smaller edge size = {size}"
            )
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """``out_size x in_size`` bilinear (triangle filter) weights with half-pixel centres.

    Upsampling this is plain bilinear interpolation (``align_corners=False``, border pixels
    repeated). Downsampling with ``antialias`` widens the triangle to the scale factor, like
    PIL and torchvision's ``antialias=True``, so every input pixel contributes.
    """
    scale = in_size / out_size
    fscale = max(scale, 1.0) if antialias else 1.0
    support = fscale  # the triangle's support is 1 input pixel, times the scale
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) / fscale))
        total = k.sum()
        if total > 0:
            w[i, lo:hi] = k / total
        else:  # cannot happen for valid sizes; nearest pixel as a guard
            w[i, min(int(center), in_size - 1)] = 1.0
    return w


def _resize_hw(arr: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    """Resize the last two axes of ``arr`` (any leading axes); keeps the dtype."""
    h, w = arr.shape[-2:]
    if (h, w) == (out_h, out_w):
        return arr.copy()
    if h == 0 or w == 0 or out_h <= 0 or out_w <= 0:
        raise ValueError(f"cannot resize an image of size {(h, w)} to {(out_h, out_w)}")
    wh = _weights(h, out_h, antialias)
    ww = _weights(w, out_w, antialias)
    x = arr.astype(np.float64)
    y = np.matmul(np.matmul(wh, x), ww.T)
    if arr.dtype.kind in "iub":
        info = np.iinfo(arr.dtype) if arr.dtype.kind != "b" else None
        y = np.rint(y)
        if info is not None:
            y = np.clip(y, info.min, info.max)
    return y.astype(arr.dtype)


def resize(img, size, antialias: bool = True, max_size=None):
    """Bilinear resize of a numpy HW/HWC image, a PIL image, or a tensor ``(..., H, W)``.

    ``size`` is ``(h, w)``, or an int for the shorter side (aspect ratio kept, the longer
    side truncated: torchvision's rule). Integer images are rounded to the nearest value.

    >>> resize(np.array([[0, 100]], dtype=np.uint8), (1, 4)).tolist()
    [[0, 25, 75, 100]]
    """
    if isinstance(img, runba.Tensor):
        arr = img.detach().numpy()
        if arr.ndim < 2:
            raise ValueError(f"resize: expected a tensor (..., H, W), got shape {arr.shape}")
        oh, ow = _output_size(arr.shape[-2], arr.shape[-1], size, max_size)
        return runba.from_numpy(_resize_hw(arr, oh, ow, antialias))
    if _is_pil(img):
        from PIL import Image

        out = resize(np.asarray(img), size, antialias, max_size)
        return Image.fromarray(out)
    if not isinstance(img, np.ndarray):
        raise TypeError(f"resize: expected a numpy array, PIL image or tensor, got {type(img)}")
    if img.ndim == 2:
        oh, ow = _output_size(img.shape[0], img.shape[1], size, max_size)
        return _resize_hw(img, oh, ow, antialias)
    if img.ndim == 3:
        oh, ow = _output_size(img.shape[0], img.shape[1], size, max_size)
        out = _resize_hw(img.transpose(2, 0, 1), oh, ow, antialias)
        return np.ascontiguousarray(out.transpose(1, 2, 0))
    raise ValueError(f"resize: expected an HW or HWC array, got shape {img.shape}")


class Resize:
    """Bilinear resize to ``size`` (see :func:`resize`); numpy in, numpy out.

    >>> Resize(28)(np.zeros((8, 8), dtype=np.uint8)).shape
    (28, 28)
    >>> Resize((2, 3))(np.zeros((4, 4, 3), dtype=np.uint8)).shape
    (2, 3, 3)
    """

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
                 antialias=True):  # fmt: skip
        mode = getattr(interpolation, "value", interpolation)
        if str(mode).lower() != "bilinear":
            raise NotImplementedError(
                f"Resize: only bilinear interpolation is implemented, got {interpolation!r}"
            )
        if isinstance(size, numbers.Integral):
            pass
        elif not (isinstance(size, (list, tuple)) and len(size) in (1, 2)):
            raise TypeError(f"Size should be int or sequence of length 1 or 2. Got {size!r}")
        self.size = size
        self.interpolation = InterpolationMode.BILINEAR
        self.max_size = max_size
        self.antialias = bool(antialias) if antialias is not None else True

    def __call__(self, img):
        return resize(img, self.size, self.antialias, self.max_size)

    def __repr__(self):
        return (
            f"Resize(size={self.size}, interpolation=bilinear, max_size={self.max_size}, "
            f"antialias={self.antialias})"
        )


class Lambda:
    """Wrap a function as a transform.

    >>> Lambda(lambda x: x * 2)(3)
    6
    """

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {repr(type(lambd).__name__)}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return "Lambda()"
