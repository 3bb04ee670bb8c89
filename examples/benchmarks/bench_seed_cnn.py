"""Seed-CNN training step (forward + backward + Adam), runba eager beside torch eager.

    python examples/benchmarks/bench_seed_cnn.py [--batch 64] [--threads 2] [--json out.json]

The model is examples/mnist_cnn.py's Net (Conv2d 1->20 5, ReLU, MaxPool2d 2, Conv2d 20->40 5,
ReLU | Linear 2560->100, ReLU, Linear 100->10, LogSoftmax), NLL loss, Adam lr 1e-3, on
random 28x28 inputs. Both libraries get the same thread count; the table shows medians of
the per-step wall time and the runba/torch ratio, measured side by side in one process run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

from benchtime import time_rounds


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def runba_step(batch: int):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mnist_cnn import Net

    import runba
    import runba.nn.functional as F  # noqa: N812
    from runba import optim

    runba.manual_seed(0)
    model = Net()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = runba.randn(batch, 1, 28, 28)
    y = runba.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()

    def infer():
        with runba.no_grad():
            model(x)

    return step, infer


def torch_net():
    """examples/mnist_cnn.py's Net written for torch (also used by bench_fusion.py)."""
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 40, 5), nn.ReLU()
            )
            self.classifier = nn.Sequential(
                nn.Linear(2560, 100), nn.ReLU(), nn.Linear(100, 10), nn.LogSoftmax(dim=1)
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return Net()


def torch_step(batch: int):
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.manual_seed(0)
    model = torch_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    return step, infer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per round")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import runba

    runba.set_num_threads(args.threads)
    fns = {}
    fns["runba train step"], fns["runba inference"] = runba_step(args.batch)
    try:
        import torch

        torch.set_num_threads(args.threads)
        fns["torch train step"], fns["torch inference"] = torch_step(args.batch)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    rows = time_rounds(fns, args.rounds, args.repeats)

    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    print(f"seed CNN, batch {args.batch}, {args.threads} threads, {_cpu_name()}")
    print(f"{'case':<22}{'median ms':>12}{'min ms':>10}")
    for k, v in rows.items():
        print(f"{k:<22}{med[k]:>12.2f}{min(v) * 1e3:>10.2f}")
    result = {
        "batch": args.batch,
        "threads": args.threads,
        "cpu": _cpu_name(),
        "runba": runba.__version__,
        "torch": torch_version,
        "median_ms": med,
    }
    if torch_version:
        for what in ("train step", "inference"):
            ratio = med[f"runba {what}"] / med[f"torch {what}"]
            result[f"ratio_{what.replace(' ', '_')}"] = ratio
            print(f"runba/torch {what}: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
