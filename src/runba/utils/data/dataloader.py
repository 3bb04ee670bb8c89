"""DataLoader and the default collate function.

Workers are threads. ``num_workers=n`` runs a pool of ``n`` threads that fetch and collate
whole batches ahead of the consumer (``prefetch_factor * n`` batches in flight) and hands them
out strictly in sampler order, so the batches are identical to ``num_workers=0``. Threads
work well here because the heavy parts (numpy decoding, resizing, stacking) release the GIL,
and grad mode is per thread, so nothing a worker does is recorded into the training graph.

Why not processes: ``fork()`` after an OpenMP region (numba's ``omp`` threading layer, used by
runba's kernels) kills the child, so process workers would need the ``spawn`` or
``forkserver`` start method, paying a fresh interpreter and a pickled dataset per worker; they
are not implemented (``multiprocessing_context`` is accepted and ignored).

Random draws from the *global* generator inside ``__getitem__`` / transforms are made by
whichever thread runs first, so with ``num_workers > 0`` such augmentations are not
reproducible; shuffling is (the sampler runs in the consumer thread).
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as _FutureTimeout

import numpy as np

import runba
from runba.utils.data.dataset import IterableDataset
from runba.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]

_ERR = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def default_collate(batch):
    """Merge a list of samples into a batch, like ``torch.utils.data.default_collate``.

    tensors -> stacked on a new dim 0; numpy arrays -> tensors, stacked; numpy scalars ->
    a tensor of their dtype; Python floats -> float64 tensor; ints -> int64 (bools -> bool);
    str/bytes -> left as the batch sequence; dicts -> dict of collated values; namedtuples ->
    the same namedtuple; other sequences (tuples too) -> a list of collated columns.

    >>> out = default_collate([(runba.tensor([1.0, 2.0]), 0), (runba.tensor([3.0, 4.0]), 1)])
    >>> out[0].shape, out[1]
    (runba.Size([2, 2]), tensor([0, 1]))
    >>> default_collate([{"x": 1.5, "name": "a"}, {"x": 2.5, "name": "b"}])
    {'x': tensor([1.5000, 2.5000], dtype=runba.float64), 'name': ['a', 'b']}
    """
    elem = batch[0]
    if isinstance(elem, runba.Tensor):
        shapes = {tuple(t.shape) for t in batch}
        if len(shapes) > 1:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {sorted(shapes)} in the batch"
            )
        return runba.stack(list(batch), 0)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "SaUO":
            raise TypeError(_ERR.format(elem.dtype))
        return default_collate([runba.from_numpy(np.asarray(b)) for b in batch])
    if isinstance(elem, np.generic):  # numpy scalar: keep its dtype
        if isinstance(elem, (np.str_, np.bytes_)):
            return batch
        arr = np.asarray(batch)
        if arr.dtype.kind in "SaUO":
            raise TypeError(_ERR.format(arr.dtype))
        return runba.from_numpy(arr)
    if isinstance(elem, bool):
        return runba.tensor(list(batch), dtype=runba.bool)
    if isinstance(elem, float):
        return runba.tensor(list(batch), dtype=runba.float64)
    if isinstance(elem, int):
        return runba.tensor(list(batch), dtype=runba.int64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        out = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns
        try:
            return type(elem)(columns)
        except TypeError:
            return columns
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """Numpy arrays (at any depth) to tensors, nothing else changed: the collate function used
    when ``batch_size=None``.

    >>> default_convert({"x": np.zeros(2), "y": 1})
    {'x': tensor([0., 0.], dtype=runba.float64), 'y': 1}
    """
    if isinstance(data, runba.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "SaUO" else runba.from_numpy(data)
    if isinstance(data, np.generic) and not isinstance(data, (np.str_, np.bytes_)):
        return runba.from_numpy(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, Mapping):
        out = {k: default_convert(v) for k, v in data.items()}
        try:
            return type(data)(out)
        except TypeError:
            return out
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, Sequence):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker thread.

    ``seed`` is None: worker threads share the process's random generators (no per-worker
    seeding, and no random draws are spent creating workers, so ``num_workers`` never
    changes the shuffle order)."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002 - torch's name
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker thread: its :class:`WorkerInfo`; elsewhere ``None``."""
    return getattr(_worker, "info", None)


class _InfiniteConstantSampler:
    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Batches from a dataset, like ``torch.utils.data.DataLoader``.

    ``shuffle=True`` uses a :class:`RandomSampler` (seeded by ``generator=`` or by
    ``runba.manual_seed``); ``num_workers > 0`` prefetches batches on that many threads,
    in order (see the module docstring for why threads). ``len(loader)`` is the number of
    batches, so ``tqdm(loader)`` shows progress. ``pin_memory``, ``timeout`` (used as the wait
    per batch), ``persistent_workers``, ``prefetch_factor`` and ``multiprocessing_context``
    are accepted for PyTorch compatibility.

    >>> from runba.utils.data import TensorDataset
    >>> ds = TensorDataset(runba.arange(5.0), runba.arange(5))
    >>> [y.tolist() for _, y in DataLoader(ds, batch_size=2)]
    [[0, 1], [2, 3], [4]]
    >>> len(DataLoader(ds, batch_size=2, drop_last=True))
    2
    """

    def __init__(
        self,
        dataset,
        batch_size=1,
        shuffle=None,
        sampler=None,
        batch_sampler=None,
        num_workers=0,
        collate_fn=None,
        pin_memory=False,
        drop_last=False,
        timeout=0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor=None,
        persistent_workers=False,
        pin_memory_device="",
        in_order=True,
    ):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable "
                "worker threads."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing. "
                "let num_workers > 0 to enable multiprocessing, otherwise set "
                "prefetch_factor to None."
            )
        if prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor < 1:
            raise ValueError("prefetch_factor option should be a positive integer")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.generator = generator

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified sampler option, "
                    f"but got sampler={sampler}"
                )
            if batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified batch_sampler "
                    f"option, but got batch_sampler={batch_sampler}"
                )
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    "sampler, and drop_last"
                )
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive "
                "with drop_last"
            )

        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError when the stream has no length, as in PyTorch
            if self.batch_size is not None:
                if self.drop_last:
                    return n // self.batch_size
                return -(-n // self.batch_size)
            return n
        return len(self._index_sampler)

    # ------------------------------------------------------------------ iteration
    def _fetch(self, index):
        ds = self.dataset
        if self._auto_collation:
            getitems = getattr(ds, "__getitems__", None)
            data = getitems(index) if getitems is not None else [ds[i] for i in index]
            return self.collate_fn(data)
        return self.collate_fn(ds[index])

    def _iter_stream(self):
        it = iter(self.dataset)
        if not self._auto_collation:
            for sample in it:
                yield self.collate_fn(sample)
            return
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield self.collate_fn(batch)

    def __iter__(self):
        if self._iterable:
            return self._iter_stream()
        if self.num_workers == 0:
            return (self._fetch(index) for index in self._index_sampler)
        return self._iter_threads()

    def _iter_threads(self):
        counter = itertools.count()
        lock = threading.Lock()
        n = self.num_workers

        def init():
            with lock:
                wid = next(counter)
            _worker.info = WorkerInfo(wid, n, None, self.dataset)
            if self.worker_init_fn is not None:
                self.worker_init_fn(wid)

        pool = ThreadPoolExecutor(n, thread_name_prefix="runba-dataloader", initializer=init)
        pending = collections.deque()
        indices = iter(self._index_sampler)
        depth = self.prefetch_factor * n
        try:
            while True:
                while len(pending) < depth:
                    index = next(indices, _END)
                    if index is _END:
                        break
                    pending.append(pool.submit(self._fetch, index))
                if not pending:
                    return
                fut = pending.popleft()
                try:
                    batch = fut.result(timeout=self.timeout or None)
                except _FutureTimeout:
                    raise RuntimeError(
                        f"DataLoader timed out after {self.timeout} seconds"
                    ) from None
                yield batch
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self):
        return (
            f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"num_workers={self.num_workers}, drop_last={self.drop_last})"
        )


_END = object()
