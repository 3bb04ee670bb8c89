"""runba.utils.data: datasets, samplers, DataLoader (incl. thread workers) and collate."""

import collections
import threading
import time

import numpy as np
import pytest

import runba
from runba.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)


def _ds(n=10):
    x = runba.arange(n * 2, dtype=runba.float32).reshape(n, 2)
    y = runba.arange(n)
    return TensorDataset(x, y)


def _labels(loader):
    return [y.tolist() for _, y in loader]


# ----------------------------------------------------------------------------- datasets
def test_tensor_dataset():
    ds = _ds(4)
    assert len(ds) == 4
    x, y = ds[2]
    assert x.tolist() == [4.0, 5.0] and y.item() == 2
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(runba.zeros(3), runba.zeros(4))


def test_subset_concat_and_add():
    ds = _ds(5)
    sub = Subset(ds, [4, 1])
    assert len(sub) == 2 and sub[0][1].item() == 4 and sub[1][1].item() == 1
    cat = ConcatDataset([ds, sub])
    assert len(cat) == 7
    assert [cat[i][1].item() for i in range(7)] == [0, 1, 2, 3, 4, 4, 1]
    assert cat[-1][1].item() == 1
    with pytest.raises(IndexError):
        cat[7]
    assert len(ds + sub) == 7


def test_random_split_lengths_and_fractions():
    g = runba.Generator().manual_seed(0)
    a, b, c = random_split(range(10), [5, 3, 2], generator=g)
    assert (len(a), len(b), len(c)) == (5, 3, 2)
    assert sorted(list(a) + list(b) + list(c)) == list(range(10))
    # fractions: floor, then the remainder round-robin from the first split (PyTorch's rule)
    parts = random_split(range(11), [0.5, 0.3, 0.2], generator=g)
    assert [len(p) for p in parts] == [6, 3, 2]
    parts = random_split(range(10), [0.34, 0.33, 0.33], generator=g)
    assert [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(10), [5, 4])


def test_random_split_reproducible():
    s1 = [list(p) for p in random_split(range(20), [10, 10],
                                        generator=runba.Generator().manual_seed(3))]  # fmt: skip
    s2 = [list(p) for p in random_split(range(20), [10, 10],
                                        generator=runba.Generator().manual_seed(3))]  # fmt: skip
    s3 = [list(p) for p in random_split(range(20), [10, 10],
                                        generator=runba.Generator().manual_seed(4))]  # fmt: skip
    assert s1 == s2 and s1 != s3
    runba.manual_seed(7)
    d1 = [list(p) for p in random_split(range(20), [10, 10])]
    runba.manual_seed(7)
    d2 = [list(p) for p in random_split(range(20), [10, 10])]
    assert d1 == d2


# ----------------------------------------------------------------------------- samplers
def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = runba.Generator().manual_seed(1)
    perm = list(RandomSampler(range(50), generator=g))
    assert sorted(perm) == list(range(50)) and perm != list(range(50))
    again = list(RandomSampler(range(50), generator=runba.Generator().manual_seed(1)))
    assert perm == again
    with_repl = list(RandomSampler(range(3), replacement=True, num_samples=100, generator=g))
    assert len(with_repl) == 100 and set(with_repl) <= {0, 1, 2} and len(set(with_repl)) == 3
    more = list(RandomSampler(range(4), num_samples=10, generator=g))
    assert (
        len(more) == 10 and sorted(more[:4]) == [0, 1, 2, 3] and sorted(more[4:8]) == [0, 1, 2, 3]
    )
    assert sorted(SubsetRandomSampler([3, 9, 4], generator=g)) == [3, 4, 9]
    bs = BatchSampler(range(7), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    bs = BatchSampler(range(7), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    with pytest.raises(ValueError):
        BatchSampler(range(3), 0, False)


# ----------------------------------------------------------------------------- loader
def test_loader_order_last_batch_and_len():
    ds = _ds(10)
    loader = DataLoader(ds, batch_size=4)
    assert len(loader) == 3
    assert _labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    xb, _ = next(iter(loader))
    assert xb.shape == (4, 2) and xb.dtype is runba.float32
    dl = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dl) == 2 and _labels(dl) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(ds)) == 10 and _labels(DataLoader(ds))[3] == [3]
    assert len(DataLoader(ds, batch_size=10)) == 1 and len(DataLoader(ds, batch_size=11)) == 1


def test_seeded_shuffle_reproducible():
    ds = _ds(30)
    runba.manual_seed(0)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    e1, e2 = _labels(loader), _labels(loader)
    runba.manual_seed(0)
    f1, f2 = _labels(loader), _labels(loader)
    assert e1 == f1 and e2 == f2
    assert e1 != e2  # a new order each epoch
    flat = sum(e1, [])
    assert sorted(flat) == list(range(30)) and flat != list(range(30))
    assert [len(b) for b in e1] == [8, 8, 8, 6]

    g1 = DataLoader(ds, batch_size=8, shuffle=True, generator=runba.Generator().manual_seed(5))
    g2 = DataLoader(ds, batch_size=8, shuffle=True, generator=runba.Generator().manual_seed(5))
    runba.manual_seed(123)  # the generator, not the global seed, decides
    a = _labels(g1)
    runba.manual_seed(456)
    assert a == _labels(g2)


def test_loader_argument_checks():
    ds = _ds(4)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="batch_sampler"):
        DataLoader(ds, batch_size=2, batch_sampler=BatchSampler(range(4), 2, False))
    with pytest.raises(ValueError):
        DataLoader(ds, num_workers=-1)


def test_custom_sampler_batch_sampler_and_collate():
    ds = _ds(6)
    assert _labels(DataLoader(ds, batch_size=2, sampler=[5, 4, 3, 2, 1, 0])) == [
        [5, 4], [3, 2], [1, 0]
    ]  # fmt: skip
    bs = [[0, 5], [1], [2, 3, 4]]
    assert _labels(DataLoader(ds, batch_sampler=bs)) == bs
    out = list(DataLoader(ds, batch_size=3, collate_fn=lambda b: len(b)))
    assert out == [3, 3]


def test_no_auto_batching():
    samples = list(DataLoader([np.array([1, 2]), np.array([3, 4])], batch_size=None))
    assert all(isinstance(s, runba.Tensor) for s in samples)
    assert samples[1].tolist() == [3, 4]


class _Slow(Dataset):
    """Items take random-ish time so unordered thread results would show up."""

    def __init__(self, n):
        self.n = n
        self.threads = set()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(0.002 * ((i * 7) % 5))
        self.threads.add(threading.get_ident())
        info = get_worker_info()
        return {"x": np.full((2, 3), i, dtype=np.float32), "i": i,
                "w": -1 if info is None else info.id}  # fmt: skip


@pytest.mark.parametrize("shuffle", [False, True])
def test_thread_workers_match_single_thread(shuffle):
    ds = _Slow(40)

    def run(workers):
        g = runba.Generator().manual_seed(11)
        dl = DataLoader(ds, batch_size=3, shuffle=shuffle, num_workers=workers, generator=g)
        return [(b["x"].numpy().copy(), b["i"].tolist()) for b in dl]

    ref = run(0)
    assert len(ref) == 14
    for workers in (1, 4):
        got = run(workers)
        assert [i for _, i in got] == [i for _, i in ref]
        for (xa, _), (xb, _) in zip(got, ref):
            np.testing.assert_array_equal(xa, xb)
    assert len(ds.threads) > 1


def test_thread_workers_info_and_errors():
    ds = _Slow(12)
    ids = set()
    seen = []
    dl = DataLoader(ds, batch_size=2, num_workers=3, worker_init_fn=seen.append)
    for b in dl:
        ids.update(b["w"].tolist())
    assert ids <= {0, 1, 2} and -1 not in ids and sorted(seen) == sorted(set(seen))
    assert get_worker_info() is None

    class Bad(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i == 5:
                raise KeyError("sample 5 is broken")
            return i

    it = iter(DataLoader(Bad(), batch_size=2, num_workers=2))
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(KeyError, match="sample 5"):
        next(it)


def test_thread_workers_early_break_does_not_hang():
    dl = DataLoader(_Slow(200), batch_size=2, num_workers=4)
    for i, _ in enumerate(dl):
        if i == 2:
            break
    assert len(list(DataLoader(_Slow(6), batch_size=2, num_workers=2))) == 3


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(DataLoader(Stream(), batch_size=3)) == 3
    assert len(DataLoader(Stream(), batch_size=3, drop_last=True)) == 2
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3, num_workers=2)][-1] == [6]
    with pytest.raises(ValueError):
        DataLoader(Stream(), shuffle=True)


def test_tqdm_sees_length():
    tqdm = pytest.importorskip("tqdm").tqdm
    bar = tqdm(DataLoader(_ds(9), batch_size=4), disable=True)
    assert bar.total == 3


# ----------------------------------------------------------------------------- collate
def test_default_collate_numbers_and_arrays():
    f = default_collate([1.5, 2.5])
    assert f.dtype is runba.float64 and f.tolist() == [1.5, 2.5]
    i = default_collate([1, 2])
    assert i.dtype is runba.int64
    assert default_collate([True, False]).dtype is runba.bool
    assert default_collate([np.float32(1), np.float32(2)]).dtype is runba.float32
    assert default_collate([np.int32(1), np.int32(2)]).dtype is runba.int32
    a = default_collate([np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)])
    assert a.dtype is runba.uint8 and a.shape == (2, 2, 3) and a[1].tolist() == [[1] * 3] * 2
    t = default_collate([runba.tensor([1.0, 2.0]), runba.tensor([3.0, 4.0])])
    assert t.shape == (2, 2) and t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert default_collate(["a", "b"]) == ["a", "b"]
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([runba.zeros(2), runba.zeros(3)])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object(), object()])
    with pytest.raises(TypeError):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_default_collate_nested():
    P = collections.namedtuple("P", "a b")
    batch = [
        {"img": np.full((2,), k, np.float32), "meta": (k, f"n{k}"), "p": P(k, float(k)),
         "l": [runba.tensor(k), {"z": k}]}
        for k in range(3)
    ]  # fmt: skip
    out = default_collate(batch)
    assert set(out) == {"img", "meta", "p", "l"}
    assert out["img"].shape == (3, 2) and out["img"].dtype is runba.float32
    assert isinstance(out["meta"], list)  # tuples collate to lists, like PyTorch
    assert out["meta"][0].tolist() == [0, 1, 2] and list(out["meta"][1]) == ["n0", "n1", "n2"]
    assert isinstance(out["p"], P) and out["p"].b.dtype is runba.float64
    assert out["l"][0].tolist() == [0, 1, 2] and out["l"][1]["z"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    x, y = default_collate([(runba.zeros(2), 0), (runba.ones(2), 1)])
    assert x.shape == (2, 2) and y.tolist() == [0, 1]


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.zeros(1), 2, "s")})
    assert isinstance(out["a"], runba.Tensor) and out["a"].dtype is runba.int64
    assert isinstance(out["b"], list) and isinstance(out["b"][0], runba.Tensor)
    assert out["b"][1:] == [2, "s"]
