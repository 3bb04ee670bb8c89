"""Random-program fuzzer: fused vs eager vs float64 numpy (DESIGN §5).

Each seed generates a small random DAG of elementwise ops, reductions (trailing axes, all
axes, a leading axis, any subset of axes), softmax-like row ops, matmuls and views over random
shapes with broadcast dims, as Python source: one rendering in runba (``prog``) and one in
float64 numpy (``ref``). Every program runs

* cold: ``runba.jit.clear_cache()`` first (plans rebuilt, kernels compiled or loaded);
* warm-memory: a second fused call compiles nothing and hits the plan cache; every fifth
  seed also runs at a *large* size (the same structure, leading dim scaled past the kernels'
  parallel threshold: the ``prange`` branches run) and must compile nothing either;
* warm-disk (a handful of seeds): a second Python process runs the standalone repros against
  the same ``RUNBA_CACHE_DIR`` and reports zero compiles;
* gradients (the first ``RUNBA_FUZZ_GRAD_N`` of the seeds): every input requires grad, and the
  gradients of a random weighting of the outputs, through the fused forward, match eager's.

A failure prints the seed and a standalone repro (the program's text). ``RUNBA_FUZZ_N=5000``
runs more seeds, ``RUNBA_FUZZ_FROM=5000`` starts past the ones already run;
``python tests/jit/test_fuzz.py SEED`` prints one seed's repro.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import runba

N_SEEDS = int(os.environ.get("RUNBA_FUZZ_N", "50"))
FIRST_SEED = int(os.environ.get("RUNBA_FUZZ_FROM", "0"))  # explore new seeds past CI's
SEEDS = list(range(FIRST_SEED, FIRST_SEED + N_SEEDS))
LARGE_EVERY = 5  # every fifth seed also runs at a size above the parallel threshold
LARGE_ELEMENTS = 150_000
MAX_ELEMENTS = 4 * LARGE_ELEMENTS
PRIMES = (2, 3, 5, 7, 11, 13)  # distinct sizes: products never alias another size

# name: (runba template, numpy template); {a} {b} operands, {c} a scalar literal
UNARY = {
    "neg": ("-{a}", "-{a}"),
    "tanh": ("{a}.tanh()", "np.tanh({a})"),
    "sigmoid": ("{a}.sigmoid()", "_sigmoid({a})"),
    "sin": ("{a}.sin()", "np.sin({a})"),
    "cos": ("{a}.cos()", "np.cos({a})"),
    "abs": ("{a}.abs()", "np.abs({a})"),
    "relu": ("{a}.relu()", "np.maximum({a}, 0.0)"),
    "exp_tanh": ("{a}.tanh().exp()", "np.exp(np.tanh({a}))"),
    "log1p_abs": ("{a}.abs().log1p()", "np.log1p(np.abs({a}))"),
    "sqrt_shift": ("({a}.abs() + 0.5).sqrt()", "np.sqrt(np.abs({a}) + 0.5)"),
    "erf": ("{a}.erf()", "_erf({a})"),
    "gelu": ("F.gelu({a}, approximate='tanh')", "_gelu_tanh({a})"),
    "scale": ("{a} * {c}", "{a} * {c}"),
    "shift": ("{a} + {c}", "{a} + {c}"),
    "rsub": ("{c} - {a}", "{c} - {a}"),
}
# float32 mathlib functions (exp, tanh, erf...) cost seconds of compile time per kernel,
# softmax-like row ops too (test_fused_vs_eager covers them op by op): drawn less often
_CHEAP = {"neg", "abs", "relu", "sin", "cos", "scale", "shift", "rsub", "sqrt_shift"}
_WEIGHT = [6.0 if k in _CHEAP else 1.0 for k in UNARY]
UNARY_P = np.array(_WEIGHT) / sum(_WEIGHT)
BINARY = {
    "add": ("{a} + {b}", "{a} + {b}"),
    "sub": ("{a} - {b}", "{a} - {b}"),
    "mul": ("{a} * {b}", "{a} * {b}"),
    "div": ("{a} / ({b}.abs() + 1.0)", "{a} / (np.abs({b}) + 1.0)"),
    "maximum": ("runba.maximum({a}, {b})", "np.maximum({a}, {b})"),
    "minimum": ("runba.minimum({a}, {b})", "np.minimum({a}, {b})"),
}
REDUCE = {"sum": "np.sum", "mean": "np.mean", "amax": "np.max", "amin": "np.min"}

HELPERS = """
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _log_softmax(x):
    s = x - np.max(x, axis=-1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))
"""


def _bshape(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _mask(shape):
    return tuple(s == 1 for s in shape)


class Value:
    """A program value: its name, shape in the small and in the large run, and dtype."""

    def __init__(self, name, small, large, dtype):
        self.name = name
        self.small = tuple(small)
        self.large = tuple(large)
        self.dtype = dtype


class Program:
    """One random program (see the module doc); ``repro()`` is standalone Python."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = self.rng = np.random.default_rng([seed, 20240611])
        rank = int(rng.integers(1, 4))
        sizes = [int(s) for s in rng.choice(PRIMES, size=rank + 2, replace=False)]
        self.small_dims = sizes[:rank]
        rest = math.prod(sizes[1:rank])
        big = -(-LARGE_ELEMENTS // rest)
        big += (big - sizes[0]) % 2  # same parity: `[..., ::2]` strides merge alike
        self.large_dims = [big] + sizes[1:rank]
        self.free = sizes[rank:]  # sizes for matmul outputs
        self.dtype = "float64" if rng.random() < 0.2 else "float32"
        self.inputs: list[tuple[Value, bool]] = []  # (value, passed transposed)
        self.values: list[Value] = []
        self.lines: list[tuple[str, str]] = []
        self.max_red = {"small": 1, "large": 1}
        self.n_ops = 0
        for _ in range(int(rng.integers(1, 4))):
            self._new_input()
        for _ in range(int(rng.integers(2, 6))):
            self._step()
        computed = [v for v in self.values if v not in {iv for iv, _ in self.inputs}]
        outs = [computed[-1]]
        for v in computed[:-1]:
            if rng.random() < 0.25 and len(outs) < 3:
                outs.append(v)
        self.outputs = outs

    # -- inputs
    def _new_input(self, shape_small=None, shape_large=None, dtype=None):
        rng = self.rng
        if shape_small is None:
            r = len(self.small_dims)
            keep = r - int(rng.integers(0, r)) if rng.random() < 0.3 else r
            shape_small, shape_large = [], []
            for s, b in zip(self.small_dims[r - keep :], self.large_dims[r - keep :]):
                one = rng.random() < 0.3
                shape_small.append(1 if one else s)
                shape_large.append(1 if one else b)
        name = f"a{len(self.inputs)}"
        v = Value(name, shape_small, shape_large, dtype or self.dtype)
        transposed = len(shape_small) >= 2 and rng.random() < 0.3
        self.inputs.append((v, transposed))
        self.values.append(v)
        return v

    # -- ops
    def _pick(self, pred=lambda v: True):
        cands = [v for v in self.values if pred(v)]
        if not cands:
            return None
        if self.rng.random() < 0.7:
            return cands[-1 - int(self.rng.integers(0, min(3, len(cands))))]
        return cands[int(self.rng.integers(0, len(cands)))]

    def _emit(self, rb, npx, small, large, dtype):
        if _mask(small) != _mask(large) or math.prod(large) > MAX_ELEMENTS:
            return None  # the structure must not depend on the sizes; no D0 x D0 blowups
        name = f"v{self.n_ops}"
        self.n_ops += 1
        self.lines.append((f"{name} = {rb}", f"{name} = _rec({npx})"))
        v = Value(name, small, large, dtype)
        self.values.append(v)
        return v

    def _const(self):
        return repr(round(float(self.rng.uniform(-1.5, 1.5)), 3))

    def _step(self):
        rng = self.rng
        kind = rng.choice(
            ["unary", "binary", "reduce", "row", "view", "matmul", "where", "cast"],
            p=[0.28, 0.28, 0.16, 0.03, 0.11, 0.07, 0.04, 0.03],
        )
        getattr(self, "_" + kind)()

    def _unary(self):
        a = self._pick()
        key = self.rng.choice(list(UNARY), p=UNARY_P)
        rb, npx = UNARY[key]
        c = self._const()
        self._emit(rb.format(a=a.name, c=c), npx.format(a=a.name, c=c), a.small, a.large, a.dtype)

    def _binary(self):
        a = self._pick()

        def ok(v):
            s = _bshape(a.small, v.small)
            return s is not None and _bshape(a.large, v.large) is not None

        b = self._pick(ok)
        if b is None or (b is a and self.rng.random() < 0.5):
            b = self._new_input() if self.rng.random() < 0.5 else a
            if not ok(b):
                b = a
        if self.rng.random() < 0.5:
            a, b = b, a
        key = list(BINARY)[int(self.rng.integers(0, len(BINARY)))]
        rb, npx = BINARY[key]
        dt = "float64" if "float64" in (a.dtype, b.dtype) else "float32"
        self._emit(
            rb.format(a=a.name, b=b.name),
            npx.format(a=a.name, b=b.name),
            _bshape(a.small, b.small),
            _bshape(a.large, b.large),
            dt,
        )

    def _where(self):
        a = self._pick()
        inputs = [iv for iv, _ in self.inputs]

        def ok(p):
            return _bshape(a.small, p.small) is not None and _bshape(a.large, p.large) is not None

        ps = [p for p in inputs if ok(p)]
        if not ps:
            return self._unary()
        p = ps[int(self.rng.integers(0, len(ps)))]
        c = self._const()
        self._emit(
            f"runba.where({p.name} > 0, {a.name}, {a.name} * {c})",
            f"np.where({p.name} > 0, {a.name}, {a.name} * {c})",
            _bshape(a.small, p.small),
            _bshape(a.large, p.large),
            a.dtype,
        )

    def _cast(self):
        a = self._pick()
        if a.dtype == "float64":
            return self._unary()
        self._emit(f"{a.name}.double()", a.name, a.small, a.large, "float64")

    def _note_red(self, v, axes):
        for mode in ("small", "large"):
            shape = getattr(v, mode)
            n = math.prod(shape[d] for d in axes) if axes else 1
            self.max_red[mode] = max(self.max_red[mode], n)

    def _reduce(self):
        a = self._pick(lambda v: len(v.small) >= 1)
        if a is None:
            return self._unary()
        r = len(a.small)
        op = list(REDUCE)[int(self.rng.integers(0, len(REDUCE)))]
        how = self.rng.choice(["all", "trailing", "leading", "subset"], p=[0.2, 0.45, 0.2, 0.15])
        if how == "all":
            self._note_red(a, range(r))
            self._emit(f"{a.name}.{op}()", f"{REDUCE[op]}({a.name})", (), (), a.dtype)
            return
        kd = bool(self.rng.random() < 0.5)
        if how == "trailing" or r == 1:
            k = int(self.rng.integers(1, r + 1))
            axes = tuple(range(r - k, r))
            dims = tuple(range(-k, 0))
        elif how == "subset":  # any proper subset: interior axes, permuted row kernels
            mask = self.rng.random(r) < 0.5
            mask[int(self.rng.integers(0, r))] = True
            if mask.all():
                mask[int(self.rng.integers(0, r))] = False
            axes = dims = tuple(int(d) for d in np.flatnonzero(mask))
        else:
            axes, dims = (0,), (0,)
        self._note_red(a, axes)

        def shape(s):
            if kd:
                return tuple(1 if i in axes else n for i, n in enumerate(s))
            return tuple(n for i, n in enumerate(s) if i not in axes)

        self._emit(
            f"{a.name}.{op}(dim={dims}, keepdim={kd})",
            f"{REDUCE[op]}({a.name}, axis={dims}, keepdims={kd})",
            shape(a.small),
            shape(a.large),
            a.dtype,
        )

    def _row(self):
        a = self._pick(lambda v: len(v.small) >= 1)
        if a is None:
            return self._unary()
        self._note_red(a, (len(a.small) - 1,))
        fn = "softmax" if self.rng.random() < 0.5 else "log_softmax"
        self._emit(f"{a.name}.{fn}(-1)", f"_{fn}({a.name})", a.small, a.large, a.dtype)

    def _view(self):
        rng = self.rng
        kind = rng.choice(["transpose", "unsqueeze", "flatten", "slice"])
        if kind == "transpose":
            a = self._pick(lambda v: len(v.small) >= 2)
            if a is not None:
                sw = lambda s: s[:-2] + (s[-1], s[-2])  # noqa: E731
                self._emit(
                    f"{a.name}.transpose(-1, -2)",
                    f"np.swapaxes({a.name}, -1, -2)",
                    sw(a.small),
                    sw(a.large),
                    a.dtype,
                )
                return
        if kind == "flatten":
            a = self._pick(lambda v: len(v.small) >= 3)
            if a is not None:
                fl = lambda s: (s[0], math.prod(s[1:]))  # noqa: E731
                text = f"{a.name}.reshape({a.name}.shape[0], -1)"
                self._emit(text, text, fl(a.small), fl(a.large), a.dtype)
                return
        if kind == "slice":
            a = self._pick(lambda v: len(v.small) >= 1 and v.small[-1] >= 3)
            if a is not None:
                sl = lambda s: s[:-1] + ((s[-1] + 1) // 2,)  # noqa: E731
                text = f"{a.name}[..., ::2]"
                self._emit(text, text, sl(a.small), sl(a.large), a.dtype)
                return
        a = self._pick(lambda v: len(v.small) <= 3)
        if a is None:
            return self._unary()
        self._emit(
            f"{a.name}.unsqueeze(0)",
            f"{a.name}[None]",
            (1,) + a.small,
            (1,) + a.large,
            a.dtype,
        )

    def _matmul(self):
        a = self._pick(lambda v: len(v.small) >= 1)
        if a is None or not self.free:
            return self._unary()
        m = self.free.pop()
        w = self._new_input([a.small[-1], m], [a.large[-1], m], a.dtype)  # matmul: one dtype
        self._note_red(a, (len(a.small) - 1,))
        self._emit(
            f"{a.name} @ {w.name}",
            f"{a.name} @ {w.name}",
            a.small[:-1] + (m,),
            a.large[:-1] + (m,),
            a.dtype,
        )

    # -- rendering
    def args(self):
        return ", ".join(v.name for v, _ in self.inputs)

    def source(self) -> str:
        """The runba program ``prog``, the numpy reference ``ref`` and ``inputs(large)``."""
        outs = ", ".join(v.name for v in self.outputs)
        rb = "\n".join(f"    {a}" for a, _ in self.lines)
        npl = "\n".join(f"    {b}" for _, b in self.lines)
        inp = [f"    rng = np.random.default_rng({self.seed})"]
        for v, transposed in self.inputs:
            small, large = tuple(v.small), tuple(v.large)
            if transposed:
                small, large = small[::-1], large[::-1]
            inp.append(f"    shape = {large} if large else {small}")
            make = f"runba.tensor(rng.standard_normal(shape).astype(np.{v.dtype}))"
            if transposed:
                make += f".permute{tuple(range(len(small)))[::-1]}"
            inp.append(f"    {v.name} = {make}")
        inp.append(f"    return [{self.args()}]")
        return (
            f"# runba JIT fuzz program, seed {self.seed}\n"
            "import math\n\nimport numpy as np\n\nimport runba\n"
            "import runba.nn.functional as F\n\n\n"
            f"def prog({self.args()}):\n{rb}\n    return ({outs},)\n\n\n"
            f"def ref({self.args()}, _rec=lambda v: v):\n{npl}\n    return ({outs},)\n\n\n"
            f"def inputs(large=False):\n" + "\n".join(inp) + "\n" + HELPERS
        )

    def repro(self) -> str:
        return self.source() + textwrap.dedent(
            """

            if __name__ == "__main__":
                args = inputs()
                eager = prog(*args)
                fused = runba.fuse(prog)(*args)
                want = ref(*[a.numpy().astype(np.float64) for a in args])
                for e, f, w in zip(eager, fused, want):
                    f, e = f.numpy(), e.numpy()
                    print("max |fused - eager| =", np.nanmax(np.abs(f - e), initial=0.0),
                          " max |eager - ref| =", np.nanmax(np.abs(e - w), initial=0.0),
                          " max |fused - ref| =", np.nanmax(np.abs(f - w), initial=0.0))
            """
        )


def load(program: Program) -> dict:
    ns: dict = {"__name__": f"runba_fuzz_{program.seed}"}
    exec(compile(program.source(), f"<fuzz seed {program.seed}>", "exec"), ns)
    return ns


def _np(outs):
    return [np.array(o.numpy(), copy=True) for o in outs]


def check_program(program: Program, ns: dict, large: bool = False):
    """Fused vs eager vs float64 numpy on one input set; returns the fused outputs."""
    mode = "large" if large else "small"
    args = ns["inputs"](large)
    peak = [1.0]

    def rec(v):
        v = np.asarray(v)
        if v.size:
            peak[0] = max(peak[0], float(np.nanmax(np.abs(v))))
        return v

    want = ns["ref"](*[a.numpy().astype(np.float64) for a in args], _rec=rec)
    eager = _np(ns["prog"](*args))
    fused = _np(runba.fuse(ns["prog"])(*args))
    runba.realize()  # dead nodes too (a program whose outputs are all concrete)
    uses_f32 = program.dtype == "float32"
    eps = np.finfo(np.float32 if uses_f32 else np.float64).eps
    # float rounding only: summation order (sqrt of the longest reduction), mathlib's few
    # ulps, and the largest magnitude the program goes through (cancellation)
    tol = 64 * eps * math.sqrt(program.max_red[mode]) * peak[0]
    for k, (f, e, w) in enumerate(zip(fused, eager, want)):
        where = f"output {k} ({program.outputs[k].name}), {mode} inputs"
        assert f.dtype == e.dtype and f.shape == e.shape, (
            f"{where}: {f.dtype}{f.shape} vs eager {e.dtype}{e.shape}"
        )
        assert f.shape == np.shape(w), f"{where}: shape {f.shape} vs numpy {np.shape(w)}"
        nan = np.isnan(f)
        assert np.array_equal(nan, np.isnan(e)), f"{where}: NaN pattern differs from eager"
        e_err = float(np.max(np.abs(e - w), where=~nan, initial=0.0))
        f_err = float(np.max(np.abs(f - w), where=~nan, initial=0.0))
        fe = float(np.max(np.abs(f - e), where=~nan, initial=0.0))
        assert f_err <= 4 * e_err + tol, (
            f"{where}: |fused - float64| = {f_err:.3g} but |eager - float64| = {e_err:.3g} "
            f"(|fused - eager| = {fe:.3g}, tol {tol:.3g})"
        )
        assert fe <= 5 * e_err + tol, f"{where}: |fused - eager| = {fe:.3g} (tol {tol:.3g})"
    return fused


def _fail_message(program, exc):
    return (
        f"fuzz seed {program.seed} failed: {type(exc).__name__}: {exc}\n"
        f"standalone repro (python repro.py; RUNBA_FUZZ_N / seed {program.seed}):\n"
        f"{'-' * 72}\n{program.repro()}{'-' * 72}"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_program(seed):
    program = Program(seed)
    ns = load(program)
    try:
        runba.realize()  # nothing pending from earlier work joins this program's graph
        runba.jit.clear_cache()  # cold: no plan or kernel in memory
        first = check_program(program, ns)
        before = runba.jit.cache_info()
        # cold: every graph of the first call was planned, or found the plan of an earlier
        # graph of that same call with the same structure (x * x before a cut, v * v after)
        assert before.plan_misses >= min(before.graphs, 1)
        assert before.plan_hits + before.plan_misses == before.graphs
        second = _np(runba.fuse(ns["prog"])(*ns["inputs"]()))
        runba.realize()
        after = runba.jit.cache_info()
        # warm memory: the same structure again compiles and loads nothing
        assert after.compiles == before.compiles, "second identical call compiled"
        assert after.kernels.disk_hits == before.kernels.disk_hits
        assert after.plan_misses == before.plan_misses
        assert after.plan_hits - before.plan_hits == before.graphs  # 0: nothing was lazy
        for a, b in zip(first, second):
            np.testing.assert_array_equal(b, a, err_msg="second call gave other values")
        if seed % LARGE_EVERY == 0:
            check_program(program, ns, large=True)
            assert runba.jit.cache_info().compiles == before.compiles, (
                "the large run (same structure, other sizes) compiled a kernel"
            )
    except Exception as exc:
        raise AssertionError(_fail_message(program, exc)) from exc
    finally:
        runba.realize()


# Gradient mode: backward through the fused forward (values a graph saved for backward are
# kept outputs of its kernels; the backward itself runs eagerly) gives eager's gradients.
GRAD_SEEDS = list(range(FIRST_SEED, FIRST_SEED + int(os.environ.get("RUNBA_FUZZ_GRAD_N", "30"))))


def _gradients(run, ns, seed):
    """d(sum of each output times fixed random weights) / d(each input), as numpy arrays,
    with ``run`` (the program, fused or not)."""
    leaves = [a.detach().requires_grad_() for a in ns["inputs"]()]
    rng = np.random.default_rng([seed, 7])
    loss = None
    for o in run(*leaves):
        if o.requires_grad:
            w = runba.tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype)
            term = (o * w).sum()
            loss = term if loss is None else loss + term
    if loss is None:
        return None
    loss.backward()
    return [None if a.grad is None else np.array(a.grad.numpy(), copy=True) for a in leaves]


@pytest.mark.parametrize("seed", GRAD_SEEDS)
def test_fuzz_gradients(seed):
    program = Program(seed)
    ns = load(program)
    try:
        runba.realize()
        eager = _gradients(ns["prog"], ns, seed)
        fused = _gradients(runba.fuse(ns["prog"]), ns, seed)
        assert (eager is None) == (fused is None)
        if eager is None:
            return
        eps = np.finfo(np.float32 if program.dtype == "float32" else np.float64).eps
        for k, (e, f) in enumerate(zip(eager, fused)):
            assert (e is None) == (f is None), f"input {k}: a gradient on one side only"
            if e is None:
                continue
            peak = max(1.0, float(np.abs(e).max(initial=0.0)))
            tol = 256 * eps * math.sqrt(program.max_red["small"]) * peak
            np.testing.assert_allclose(f, e, rtol=0, atol=tol, err_msg=f"grad of input {k}")
    except Exception as exc:
        raise AssertionError(_fail_message(program, exc)) from exc
    finally:
        runba.realize()


WARM_DISK_SEEDS = [1, 2, 3, 4]

_CHILD = """
import json, sys
import numpy as np
import runba
out = {}
for seed, path in json.loads(sys.argv[1]):
    ns = {"__name__": "child"}
    exec(open(path).read(), ns)
    fused = runba.fuse(ns["prog"])(*ns["inputs"]())
    np.savez(path + ".npz", *[f.numpy() for f in fused])
info = runba.jit.cache_info()
print(json.dumps({"compiles": info.compiles, "disk_hits": info.kernels.disk_hits,
                  "launches": info.launches}))
"""


def test_fuzz_warm_disk(tmp_path):
    """A second process, same cache dir: the programs' kernels load from disk, none compile."""
    jobs, expected = [], {}
    for seed in WARM_DISK_SEEDS:
        program = Program(seed)
        ns = load(program)
        try:
            expected[seed] = check_program(program, ns)
        except Exception as exc:
            raise AssertionError(_fail_message(program, exc)) from exc
        path = tmp_path / f"fuzz_{seed}.py"
        path.write_text(program.repro())
        jobs.append((seed, str(path)))
    env = dict(os.environ)
    env.pop("RUNBA_DEBUG", None)
    env.pop("RUNBA_JIT", None)
    assert env.get("RUNBA_CACHE_DIR"), "tests/conftest.py sets a per-run cache dir"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["launches"] >= len(jobs)
    assert info["disk_hits"] >= 1
    assert info["compiles"] == 0, f"warm-disk process compiled: {info}\n{proc.stderr[-4000:]}"
    for seed, path in jobs:
        with np.load(path + ".npz") as got:
            for k, want in enumerate(expected[seed]):
                np.testing.assert_allclose(
                    got[f"arr_{k}"], want, rtol=1e-6, atol=1e-7, err_msg=f"seed {seed}"
                )


def test_generator_is_deterministic_and_varied():
    """The fuzzer itself: same seed, same text; the seeds cover every kind of op."""
    assert Program(7).source() == Program(7).source()
    text = "\n".join(Program(s).source() for s in range(N_SEEDS))
    for needle in ("@", ".sum(", ".amax(", "softmax(-1)", "[..., ::2]", "transpose(", ".permute("):
        assert needle in text, f"no program among {N_SEEDS} seeds uses {needle!r}"
    assert any(Program(s).dtype == "float64" for s in SEEDS)


if __name__ == "__main__":  # print one seed's standalone repro
    print(Program(int(sys.argv[1])).repro())
