"""The classic MNIST CNN, written for PyTorch and run on runba by changing only the imports.

    python examples/mnist_cnn.py                    # offline: scikit-learn's digits at 28x28
    python examples/mnist_cnn.py --data ~/mnist     # real MNIST (root/MNIST/raw/*-ubyte[.gz])
    python examples/mnist_cnn.py --smoke            # a few batches, for the tests

The PyTorch original imports ``torch``, ``torch.nn``, ``torch.optim``,
``torch.utils.data`` and ``torchvision``; everything below the imports is unchanged.
"""

import argparse
import time

import runba as torch
import runba.nn.functional as F  # noqa: N812 - the conventional name
from runba import nn, optim
from runba.utils.data import DataLoader, Subset
from runba.vision import datasets, transforms

try:
    from tqdm import tqdm
except ImportError:  # tqdm is in the examples extra; run without a progress bar otherwise

    def tqdm(iterable, **kwargs):
        return iterable


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 20, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 40, 5),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(2560, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def train(model, device, loader, optimizer, epoch, max_batches=None):
    model.train()
    total, seen = 0.0, 0
    for batch_idx, (data, target) in enumerate(tqdm(loader, desc=f"epoch {epoch}", leave=False)):
        if max_batches is not None and batch_idx >= max_batches:
            break
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(data)
        seen += len(data)
    return total / max(seen, 1)


def test(model, device, loader, max_batches=None, predict=None):
    """Test loss and accuracy; ``predict`` (default: ``model``) computes the outputs."""
    predict = predict or model
    model.eval()
    test_loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for batch_idx, (data, target) in enumerate(loader):
            if max_batches is not None and batch_idx >= max_batches:
                break
            data, target = data.to(device), target.to(device)
            output = predict(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
            seen += len(data)
    return test_loss / max(seen, 1), correct / max(seen, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="runba MNIST CNN")
    parser.add_argument("--data", default=None, help="MNIST root; default: offline Digits")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", default="mnist_cnn.safetensors", help="'' to skip saving")
    parser.add_argument("--smoke", action="store_true", help="a few batches, one epoch")
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="run the test loop fused (runba.fuse); training is eager",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    if args.data:
        train_set = datasets.MNIST(args.data, train=True, download=False, transform=transform)
        test_set = datasets.MNIST(args.data, train=False, download=False, transform=transform)
    else:
        train_set = datasets.Digits(train=True, transform=transform)
        test_set = datasets.Digits(train=False, transform=transform)
    max_batches = None
    if args.smoke:
        args.epochs, max_batches = 1, 3
        train_set = Subset(train_set, range(3 * args.batch_size))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size)

    model = Net().to(device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    # runba's JIT: the forward pass recorded, fused into Numba kernels and cached (inference
    # only for now; fused training is the next JIT step)
    predict = torch.fuse(lambda x: model(x)) if args.fuse else model
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_loss = train(model, device, train_loader, optimizer, epoch, max_batches)
        test_loss, accuracy = test(model, device, test_loader, max_batches, predict)
        print(
            f"epoch {epoch}: train loss {train_loss:.4f}  test loss {test_loss:.4f}  "
            f"test accuracy {100 * accuracy:.2f}%  ({time.perf_counter() - start:.1f} s)"
        )
    if args.save:
        torch.save(model.state_dict(), args.save)
        print(f"saved the model to {args.save}")
    return accuracy


if __name__ == "__main__":
    main()
