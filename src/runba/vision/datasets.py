"""Vision datasets: MNIST and FashionMNIST from IDX files, and the offline ``Digits``.

Samples are ``(image, label)``: ``image`` a uint8 numpy array ``H x W`` (after
``transform``, if given; ``transforms.ToTensor()`` turns it into a ``1 x H x W`` float tensor),
``label`` a Python int (after ``target_transform``). Every dataset has ``.data`` (uint8
tensor ``N x H x W``), ``.targets`` (int64 tensor ``N``) and ``.classes``.

MNIST/FashionMNIST read torchvision's layout, plain or gzipped::

    root/MNIST/raw/train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    root/MNIST/raw/t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]
    root/FashionMNIST/raw/...                     (same four names)

IDX files are checked strictly (magic number 2051 for images / 2049 for labels, dimensions,
exact file length, labels in range, equal counts) and a gzipped file is never decompressed
past the size its header implies (plus one byte to detect a longer stream): a gzip bomb is
refused after reading at most ``header size + 1`` bytes.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import secrets
import zlib

import numpy as np

import runba
from runba.utils.data import Dataset

__all__ = ["MNIST", "FashionMNIST", "Digits", "read_idx", "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC"]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dims
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dim
MAX_IDX_BYTES = 1 << 30  # refuse headers implying more than 1 GiB of data

_MNIST_CLASSES = [
    "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
    "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine",
]  # fmt: skip


def read_idx(path, magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (plain, or gzip if the name ends in ``.gz``).

    ``magic`` is the expected magic number (2051 images, 2049 labels); its low byte is the
    number of dimensions. Raises ``ValueError`` naming the file for a wrong magic number,
    zero or oversized dimensions, a length that differs from what the header implies
    (truncated or trailing data), a corrupt gzip stream, or a gzip stream that decompresses
    past the implied size (a gzip bomb: reading stops at the implied size + 1 byte).
    """
    path = os.fspath(path)
    ndim = magic & 0xFF
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            got = int.from_bytes(_read_exact(fh, 4, path, "the magic number"), "big")
            if got != magic:
                raise ValueError(
                    f"{path}: bad IDX magic number {got} (expected {magic}: "
                    f"{'images' if magic == IDX_IMAGES_MAGIC else 'labels'}, unsigned bytes, "
                    f"{ndim} dims)"
                )
            head = _read_exact(fh, 4 * ndim, path, "the header's dimensions")
            dims = [int.from_bytes(head[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            if any(d == 0 for d in dims[1:]):
                raise ValueError(f"{path}: IDX dimensions {dims} contain a zero")
            nbytes = math.prod(dims)
            if nbytes > MAX_IDX_BYTES:
                raise ValueError(
                    f"{path}: IDX header implies {nbytes} bytes of data (dims {dims}), more "
                    f"than the {MAX_IDX_BYTES}-byte limit"
                )
            body = _read_exact(fh, nbytes, path, f"the data ({dims} bytes implied)")
            extra = fh.read(1)
            if extra:
                what = "decompresses to" if opener is gzip.open else "has"
                raise ValueError(
                    f"{path}: file {what} more than the {4 + 4 * ndim + nbytes} bytes its "
                    f"IDX header implies (dims {dims}); refusing to read further"
                    + (" (possible gzip bomb)" if opener is gzip.open else "")
                )
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path}: corrupt gzip stream: {e}") from None
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def _read_exact(fh, n, path, what):
    chunks, left = [], n
    while left:
        chunk = fh.read(min(left, 1 << 24))
        if not chunk:
            raise ValueError(f"{path}: truncated IDX file: {what} needs {n} bytes, got {n - left}")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _DatasetBase(Dataset):
    classes: list = _MNIST_CLASSES

    def __init__(self, transform=None, target_transform=None):
        self.transform = transform
        self.target_transform = target_transform

    def _set(self, images: np.ndarray, labels: np.ndarray):
        self._images = np.ascontiguousarray(images, dtype=np.uint8)
        self._labels = labels.astype(np.int64)
        self.data = runba.from_numpy(self._images)
        self.targets = runba.from_numpy(self._labels)

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        img = self._images[index].copy()
        target = int(self._labels[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self):
        split = "Train" if self.train else "Test"
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Split: {split}",
        ]
        if getattr(self, "root", None) is not None:
            lines.insert(2, f"    Root location: {self.root}")
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        return "\n".join(lines)


class MNIST(_DatasetBase):
    """MNIST from IDX files in ``root/MNIST/raw`` (torchvision's layout; ``.gz`` is fine).

    ``download=True`` fetches missing files from the mirrors (checking MD5s); offline it
    raises ``RuntimeError`` naming the four files and the folder to put them in. Without the
    files, ``runba.vision.datasets.Digits`` needs no download.

    >>> ds = MNIST("data", train=True)  # doctest: +SKIP
    >>> img, label = ds[0]  # doctest: +SKIP
    >>> img.shape, ds.data.shape  # doctest: +SKIP
    ((28, 28), runba.Size([60000, 28, 28]))
    """

    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = _MNIST_CLASSES
    files = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        super().__init__(transform, target_transform)
        self.root = os.path.expanduser(os.fspath(root))
        self.train = train
        if download:
            self.download()
        prefix = "train" if train else "t10k"
        img_path = self._find(f"{prefix}-images-idx3-ubyte")
        lbl_path = self._find(f"{prefix}-labels-idx1-ubyte")
        if img_path is None or lbl_path is None:
            raise RuntimeError(self._missing_message("Dataset not found."))
        images = read_idx(img_path, IDX_IMAGES_MAGIC)
        labels = read_idx(lbl_path, IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(
                f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels"
            )
        if labels.size and int(labels.max()) >= len(self.classes):
            raise ValueError(
                f"{lbl_path}: label {int(labels.max())} out of range for "
                f"{len(self.classes)} classes"
            )
        self._set(images, labels)

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, type(self).__name__, "raw")

    def _find(self, name):
        for candidate in (name, name + ".gz"):
            p = os.path.join(self.raw_folder, candidate)
            if os.path.isfile(p):
                return p
        return None

    def _check_exists(self) -> bool:
        return all(self._find(f) is not None for f in self.files)

    def _missing_message(self, first: str) -> str:
        names = ", ".join(self.files)
        return (
            f"{first} {type(self).__name__} needs these 4 files (plain or .gz): {names}. "
            f"Put them in the folder {os.path.abspath(self.raw_folder)} "
            f"(they are published at {self.mirrors[0]}). "
            "runba.vision.datasets.Digits() needs no download."
        )

    def download(self) -> None:
        """Fetch the missing ``.gz`` files into :attr:`raw_folder` (MD5-checked, atomic)."""
        if self._check_exists():
            return
        import urllib.request

        os.makedirs(self.raw_folder, exist_ok=True)
        for fname, md5 in self.resources:
            if self._find(fname[: -len(".gz")]) is not None:
                continue
            errors = []
            for mirror in self.mirrors:
                try:
                    self._fetch(urllib.request, mirror + fname, fname, md5)
                    break
                except Exception as e:  # any network / checksum failure: try the next one
                    errors.append(f"{mirror}: {e}")
            else:
                raise RuntimeError(
                    self._missing_message(f"Could not download {fname} ({'; '.join(errors)}).")
                )

    def _fetch(self, urllib_request, url, fname, md5):
        dest = os.path.join(self.raw_folder, fname)
        tmp = f"{dest}.{secrets.token_hex(4)}.part"
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with urllib_request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
                total = 0
                while chunk := resp.read(1 << 20):
                    total += len(chunk)
                    if total > 64 << 20:
                        raise RuntimeError("download larger than 64 MiB")
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != md5:
                raise RuntimeError(f"MD5 mismatch ({digest.hexdigest()} != {md5})")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class FashionMNIST(MNIST):
    """Fashion-MNIST from IDX files in ``root/FashionMNIST/raw`` (same interface as MNIST)."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]  # fmt: skip


DIGITS_SEED = 0
DIGITS_TRAIN_SIZE = 1500


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise RuntimeError(
            "Digits needs scikit-learn (pip install scikit-learn, or runba[examples])"
        ) from e
    from runba.vision.transforms import resize

    bunch = load_digits()
    imgs8 = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    imgs8 = np.clip(imgs8, 0, 255).astype(np.uint8)
    imgs28 = resize(imgs8.reshape(-1, 8, 8).transpose(1, 2, 0), (28, 28))  # HWC, C = images
    imgs28 = np.ascontiguousarray(imgs28.transpose(2, 0, 1))
    labels = np.asarray(bunch.target, dtype=np.int64)
    perm = runba.randperm(len(labels), generator=runba.Generator().manual_seed(DIGITS_SEED))
    perm = np.asarray(perm.tolist(), dtype=np.int64)
    for a in (imgs28, labels, perm):
        a.setflags(write=False)
    return imgs28, labels, perm


class Digits(_DatasetBase):
    """scikit-learn's bundled 8x8 handwritten digits as 28x28 MNIST-like images: offline.

    1797 images (``sklearn.datasets.load_digits``, values 0..16) are scaled to uint8
    (``round(v * 255 / 16)``) and resized to 28x28 with :class:`~runba.vision.transforms.Resize`
    (bilinear). The split is fixed: ``perm = runba.randperm(1797,
    generator=runba.Generator().manual_seed(0))``; ``perm[:1500]`` is the train set and
    ``perm[1500:]`` (297 images) the test set, in that order. Same interface as
    :class:`MNIST`; ``root`` and ``download`` are accepted and ignored. Needs scikit-learn.

    >>> ds = Digits(train=False)  # doctest: +SKIP
    >>> len(ds), ds.data.shape, ds.data.dtype  # doctest: +SKIP
    (297, runba.Size([297, 28, 28]), runba.uint8)
    """

    classes = _MNIST_CLASSES

    def __init__(self, root=None, train=True, transform=None, target_transform=None,
                 download=False):  # fmt: skip
        super().__init__(transform, target_transform)
        self.root = None if root is None else os.fspath(root)
        self.train = train
        imgs, labels, perm = _digits_arrays()
        idx = perm[:DIGITS_TRAIN_SIZE] if train else perm[DIGITS_TRAIN_SIZE:]
        self._set(imgs[idx], labels[idx])
