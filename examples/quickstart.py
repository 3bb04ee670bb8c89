"""A first runba program: a tiny linear model fitted by gradient descent with autograd.

python examples/quickstart.py
"""

import runba


def main(steps: int = 200) -> float:
    runba.manual_seed(0)
    x = runba.randn(256, 3)
    true_w = runba.tensor([[2.0], [-1.0], [0.5]])
    y = x @ true_w + 0.3
    w = runba.zeros(3, 1, requires_grad=True)
    b = runba.zeros(1, requires_grad=True)
    for step in range(steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with runba.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
        w.grad = None
        b.grad = None
        if step % 50 == 0:
            print(f"step {step:4d}  loss {loss.item():.6f}")
    print(f"learned w = {w.detach().reshape(-1).tolist()}, b = {b.item():.4f}")
    return loss.item()


if __name__ == "__main__":
    main()
