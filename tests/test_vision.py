"""runba.vision: IDX datasets (tiny generated files), Digits, and transforms."""

import gzip
import math
import os
import struct

import numpy as np
import pytest

import runba
from runba.vision import datasets, transforms
from runba.vision.datasets import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx


# ----------------------------------------------------------------------------- IDX helpers
def _idx_images(imgs: np.ndarray, magic=IDX_IMAGES_MAGIC) -> bytes:
    n, h, w = imgs.shape
    return struct.pack(">IIII", magic, n, h, w) + imgs.astype(np.uint8).tobytes()


def _idx_labels(labels, magic=IDX_LABELS_MAGIC) -> bytes:
    labels = np.asarray(labels, np.uint8)
    return struct.pack(">II", magic, len(labels)) + labels.tobytes()


def _write(path, data: bytes, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _make_mnist(root, name="MNIST", gz=False, n_train=5, n_test=3, h=4, w=3):
    raw = root / name / "raw"
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        _write(raw / f"{prefix}-images-idx3-ubyte", _idx_images(imgs), gz)
        _write(raw / f"{prefix}-labels-idx1-ubyte", _idx_labels(labels), gz)
        out[prefix] = (imgs, labels)
    return out


# ----------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cls", [datasets.MNIST, datasets.FashionMNIST])
def test_mnist_layout_plain_and_gz(tmp_path, gz, cls):
    ref = _make_mnist(tmp_path, cls.__name__, gz)
    for train, prefix in ((True, "train"), (False, "t10k")):
        ds = cls(tmp_path, train=train)
        imgs, labels = ref[prefix]
        assert len(ds) == len(labels)
        assert ds.data.dtype is runba.uint8 and ds.data.shape == imgs.shape
        assert ds.targets.dtype is runba.int64 and ds.targets.tolist() == labels.tolist()
        np.testing.assert_array_equal(ds.data.numpy(), imgs)
        img, label = ds[1]
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, imgs[1])
        assert type(label) is int and label == labels[1]
        assert len(ds.classes) == 10 and ds.class_to_idx[ds.classes[3]] == 3
    assert datasets.FashionMNIST.classes[0] == "T-shirt/top"


def test_mnist_transforms_applied(tmp_path):
    ref = _make_mnist(tmp_path)
    ds = datasets.MNIST(
        tmp_path,
        transform=transforms.ToTensor(),
        target_transform=lambda y: y + 100,
    )
    x, y = ds[0]
    assert x.shape == (1, 4, 3) and x.dtype is runba.float32
    np.testing.assert_allclose(x.numpy()[0], ref["train"][0][0] / 255.0, rtol=1e-6)
    assert y == ref["train"][1][0] + 100


def test_mnist_missing_files_and_offline_download(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError) as e:
        datasets.MNIST(tmp_path, download=False)
    msg = str(e.value)
    for f in datasets.MNIST.files:
        assert f in msg
    assert os.path.join(str(tmp_path), "MNIST", "raw") in msg

    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as e:
        datasets.FashionMNIST(tmp_path, download=True)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert os.path.join(str(tmp_path), "FashionMNIST", "raw") in msg
    assert not [p for p in os.listdir(tmp_path / "FashionMNIST" / "raw") if p.endswith(".part")]


def test_download_is_noop_when_files_exist(tmp_path, monkeypatch):
    _make_mnist(tmp_path, gz=True)
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: 1 / 0)
    assert len(datasets.MNIST(tmp_path, download=True)) == 5


IMGS = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    "name,data,magic,match",
    [
        ("bad magic", _idx_images(IMGS, magic=2049), IDX_IMAGES_MAGIC, "magic"),
        ("labels as images", _idx_labels([1, 2]), IDX_IMAGES_MAGIC, "magic"),
        ("truncated data", _idx_images(IMGS)[:-1], IDX_IMAGES_MAGIC, "truncated"),
        ("truncated header", _idx_images(IMGS)[:10], IDX_IMAGES_MAGIC, "truncated"),
        ("count too big", struct.pack(">IIII", 2051, 3, 3, 3) + IMGS.tobytes(),
         IDX_IMAGES_MAGIC, "truncated"),
        ("trailing data", _idx_images(IMGS) + b"\0", IDX_IMAGES_MAGIC, "more than"),
        ("count too small", struct.pack(">II", 2049, 1) + b"\1\2", IDX_LABELS_MAGIC, "more than"),
        ("zero dim", struct.pack(">IIII", 2051, 1, 0, 3), IDX_IMAGES_MAGIC, "zero"),
        ("huge dims", struct.pack(">IIII", 2051, 2**31, 2**16, 2**16), IDX_IMAGES_MAGIC, "limit"),
        ("empty", b"", IDX_LABELS_MAGIC, "truncated"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)  # fmt: skip
def test_read_idx_rejects_malformed(tmp_path, gz, name, data, magic, match):
    path = _write(tmp_path / "f-idx-ubyte", data, gz)
    with pytest.raises(ValueError, match=match) as e:
        read_idx(path, magic)
    assert str(path) in str(e.value)


def test_read_idx_valid(tmp_path):
    for gz in (False, True):
        path = _write(tmp_path / f"ok{gz}", _idx_images(IMGS), gz)
        np.testing.assert_array_equal(read_idx(path, IDX_IMAGES_MAGIC), IMGS)
        path = _write(tmp_path / f"lab{gz}", _idx_labels([3, 1]), gz)
        assert read_idx(path, IDX_LABELS_MAGIC).tolist() == [3, 1]
    # empty dataset (0 images) is well formed
    path = _write(tmp_path / "none", struct.pack(">IIII", 2051, 0, 28, 28))
    assert read_idx(path, IDX_IMAGES_MAGIC).shape == (0, 28, 28)


def test_gzip_bomb_refused_without_decompressing_it(tmp_path):
    # header says 1 image of 2x2 (4 bytes), the stream then inflates to 64 MiB of zeros
    path = tmp_path / "bomb-idx3-ubyte.gz"
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(struct.pack(">IIII", 2051, 1, 2, 2))
        for _ in range(64):
            f.write(zeros)
    assert path.stat().st_size < 200_000
    import runba.vision.datasets as dsmod

    reads = []
    real_open = gzip.open

    class Counting:
        def __init__(self, *a, **k):
            self.f = real_open(*a, **k)

        def read(self, n=-1):
            assert n is not None and n >= 0, "unbounded read"
            out = self.f.read(n)
            reads.append(len(out))
            return out

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    orig = dsmod.gzip.open
    dsmod.gzip.open = Counting
    try:
        with pytest.raises(ValueError, match="gzip bomb"):
            read_idx(path, IDX_IMAGES_MAGIC)
    finally:
        dsmod.gzip.open = orig
    assert sum(reads) <= 20 + 4 + 1


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(_idx_images(IMGS))
    path = tmp_path / "c-idx3-ubyte.gz"
    path.write_bytes(good[:-12])  # cut the stream (and its CRC)
    with pytest.raises(ValueError, match=str(path)):
        read_idx(path, IDX_IMAGES_MAGIC)
    path.write_bytes(b"not gzip at all" * 3)
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_mnist_count_mismatch_and_label_range(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _write(raw / "train-images-idx3-ubyte", _idx_images(IMGS))
    _write(raw / "train-labels-idx1-ubyte", _idx_labels([1, 2, 3]))
    with pytest.raises(ValueError, match="2 images but"):
        datasets.MNIST(tmp_path)
    _write(raw / "train-labels-idx1-ubyte", _idx_labels([1, 10]))
    with pytest.raises(ValueError, match="out of range"):
        datasets.MNIST(tmp_path)


# ----------------------------------------------------------------------------- Digits
def test_digits():
    pytest.importorskip("sklearn")
    train, test = datasets.Digits(train=True), datasets.Digits(train=False)
    assert len(train) == 1500 and len(test) == 297
    for ds in (train, test):
        assert ds.data.dtype is runba.uint8 and ds.data.shape[1:] == (28, 28)
        assert ds.targets.dtype is runba.int64 and len(ds.targets) == len(ds)
        assert ds.classes == datasets.MNIST.classes
    assert int(train.data.numpy().max()) == 255 and int(train.data.numpy().min()) == 0
    img, label = test[0]
    assert img.shape == (28, 28) and img.dtype == np.uint8 and type(label) is int
    assert set(train.targets.tolist()) == set(range(10))

    # the split is a fixed permutation of sklearn's order: check it against the 8x8 originals
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = runba.randperm(1797, generator=runba.Generator().manual_seed(0)).tolist()
    assert train.targets.tolist() == d.target[perm[:1500]].tolist()
    assert test.targets.tolist() == d.target[perm[1500:]].tolist()
    k = perm[1500]
    small = np.rint(d.images[k] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(test.data.numpy()[0], transforms.Resize(28)(small))
    x, _ = datasets.Digits(train=False, transform=transforms.ToTensor())[0]
    assert x.shape == (1, 28, 28) and x.dtype is runba.float32


# ----------------------------------------------------------------------------- transforms
def test_to_tensor_values_and_layout():
    hwc = np.array([[[0, 51, 255], [102, 0, 1]]], dtype=np.uint8)  # H=1, W=2, C=3
    x = transforms.ToTensor()(hwc)
    assert x.shape == (3, 1, 2) and x.dtype is runba.float32
    assert x.numpy()[:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert x.numpy()[:, 0, 1].tolist() == pytest.approx([0.4, 0.0, 1 / 255])
    hw = transforms.ToTensor()(np.array([[255, 0]], dtype=np.uint8))
    assert hw.shape == (1, 1, 2) and hw.tolist() == [[[1.0, 0.0]]]
    f = np.full((2, 2), 3.5, np.float64)
    y = transforms.ToTensor()(f)
    assert y.dtype is runba.float64 and y.tolist() == [[[3.5, 3.5], [3.5, 3.5]]]
    f[0, 0] = 0
    assert y.tolist()[0][0][0] == 3.5  # a copy, not a view of the input
    with pytest.raises(TypeError):
        transforms.ToTensor()(runba.zeros(1, 2, 2))
    with pytest.raises(ValueError):
        transforms.ToTensor()(np.zeros((1, 1, 1, 1), np.uint8))


def test_normalize():
    x = runba.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 2, 2))
    out = transforms.Normalize((1.0, 2.0, 3.0), (2.0, 4.0, 0.5))(x)
    ref = np.arange(12, dtype=np.float32).reshape(3, 2, 2) - np.array([1, 2, 3])[:, None, None]
    ref = ref / np.array([2, 4, 0.5])[:, None, None]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    assert out.dtype is runba.float32 and x.numpy()[0, 0, 0] == 0  # not in place
    batch = runba.ones(2, 1, 2, 2)
    assert transforms.Normalize([0.5], [0.25])(batch).tolist()[1][0] == [[2.0, 2.0], [2.0, 2.0]]
    with pytest.raises(ValueError, match="zero"):
        transforms.Normalize((0.0,), (0.0,))(runba.ones(1, 2, 2))
    with pytest.raises(TypeError):
        transforms.Normalize((0.0,), (1.0,))(runba.ones(1, 2, 2, dtype=runba.uint8))
    with pytest.raises(ValueError):
        transforms.Normalize((0.0,), (1.0,))(runba.ones(2, 2))


def _bilinear_reference(img, oh, ow):
    """Per-pixel bilinear (align_corners=False, edges clamped), written independently."""
    h, w = img.shape
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            sy = max((i + 0.5) * h / oh - 0.5, 0.0)
            sx = max((j + 0.5) * w / ow - 0.5, 0.0)
            y0, x0 = min(int(math.floor(sy)), h - 1), min(int(math.floor(sx)), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize("shape,size", [((8, 8), (28, 28)), ((3, 5), (7, 6)), ((4, 4), (4, 9)),
                                        ((6, 9), (3, 4))])  # fmt: skip
def test_resize_matches_bilinear_reference(shape, size):
    rng = np.random.default_rng(1)
    img = rng.random(shape)
    got = transforms.Resize(size, antialias=False)(img)
    np.testing.assert_allclose(got, _bilinear_reference(img, *size), atol=1e-12)
    if size[0] >= shape[0] and size[1] >= shape[1]:  # upsampling: antialias changes nothing
        np.testing.assert_allclose(transforms.Resize(size)(img), got, atol=1e-12)


def test_resize_hand_values_and_uint8_rounding():
    img = np.array([[0, 100]], dtype=np.uint8)
    assert transforms.Resize((1, 4))(img).tolist() == [[0, 25, 75, 100]]
    assert transforms.Resize((1, 4))(img).dtype == np.uint8
    # antialiased 2x downsampling: a triangle 2 input pixels wide around each output centre
    # (centre 1.0: taps 0, 1, 2 with weights .75, .75, .25; normalised by their sum 1.75)
    row = np.array([[0.0, 4.0, 8.0, 12.0]])
    np.testing.assert_allclose(transforms.Resize((1, 2))(row), [[20 / 7, 64 / 7]])
    # without antialias: plain bilinear at source x = 0.5 and 2.5
    np.testing.assert_allclose(transforms.Resize((1, 2), antialias=False)(row), [[2.0, 10.0]])


def test_resize_size_rules_and_layouts():
    img = np.zeros((10, 20, 3), np.uint8)
    assert transforms.Resize(5)(img).shape == (5, 10, 3)  # int: shorter side
    assert transforms.Resize(7)(np.zeros((20, 10), np.uint8)).shape == (14, 7)
    assert transforms.Resize(7)(np.zeros((10, 15), np.uint8)).shape == (7, 10)  # truncates
    assert transforms.Resize([6])(img).shape == (6, 12, 3)
    assert transforms.Resize((3, 4))(img).shape == (3, 4, 3)
    assert transforms.Resize(5, max_size=8)(img).shape == (4, 8, 3)
    t = transforms.Resize((2, 3))(runba.ones(2, 1, 4, 4))
    assert isinstance(t, runba.Tensor) and t.shape == (2, 1, 2, 3)
    np.testing.assert_allclose(t.numpy(), 1.0)
    # each channel of an HWC image is resized like the HW image alone
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = transforms.Resize((9, 4))(rgb)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], transforms.Resize((9, 4))(rgb[..., c]))
    with pytest.raises(NotImplementedError):
        transforms.Resize(4, interpolation="bicubic")


def test_compose_and_lambda():
    t = transforms.Compose([
        transforms.Lambda(lambda a: a[:, ::-1]),
        transforms.ToTensor(),
        transforms.Normalize((0.5,), (0.5,)),
    ])  # fmt: skip
    out = t(np.array([[0, 255]], dtype=np.uint8))
    assert out.tolist() == [[[1.0, -1.0]]]
    assert "ToTensor()" in repr(t) and "Normalize" in repr(t)
    with pytest.raises(TypeError):
        transforms.Lambda(3)


def test_pil_images_when_available():
    Image = pytest.importorskip("PIL.Image")
    img = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8))
    x = transforms.ToTensor()(img)
    assert x.shape == (1, 2, 2) and x.tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    big = transforms.Resize(4)(img)
    assert isinstance(big, Image.Image) and big.size == (4, 4)
