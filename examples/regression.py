"""Multiple linear regression on scikit-learn's diabetes data with ``nn.Linear``.

    python examples/regression.py

Features are standardised with numpy and handed to runba with ``from_numpy`` (shared
memory, no copy); the model is one ``nn.Linear(10, 1)`` trained with SGD on the mean squared
error. Prints R² on a held-out split, next to the closed-form least-squares R² (the best a
linear model can do on this split).
"""

import argparse

import numpy as np
from sklearn.datasets import load_diabetes

import runba
from runba import nn, optim


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    ss_res = float(((y_true - y_pred) ** 2).sum())
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot


def main(argv=None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(description="linear regression on the diabetes data")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args(argv)

    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:350], order[350:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = ((x - mean) / std).astype(np.float32)
    y_mean, y_std = y[train].mean(), y[train].std()
    y = ((y - y_mean) / y_std).astype(np.float32).reshape(-1, 1)

    x_train, y_train = runba.from_numpy(x[train]), runba.from_numpy(y[train])
    x_test = runba.from_numpy(x[test])

    runba.manual_seed(0)
    model = nn.Linear(10, 1)
    loss_fn = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        if epoch % 100 == 0:
            print(f"epoch {epoch:4d}  mse {loss.item():.4f}")

    with runba.no_grad():
        pred = model(x_test).numpy()
    r2 = r2_score(y[test], pred)
    design = np.hstack([x[train], np.ones((len(train), 1), np.float32)])
    coef, *_ = np.linalg.lstsq(design, y[train], rcond=None)
    r2_lstsq = r2_score(y[test], np.hstack([x[test], np.ones((len(test), 1))]) @ coef)
    print(f"test R^2 = {r2:.4f}   (closed-form least squares: {r2_lstsq:.4f})")
    return r2, r2_lstsq


if __name__ == "__main__":
    main()
