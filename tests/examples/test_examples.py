"""The examples run end to end (smoke mode for the CNN)."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_converges():
    loss = _load("quickstart").main(steps=200)
    assert loss < 1e-3


def test_mnist_cnn_smoke(tmp_path):
    pytest.importorskip("sklearn")
    import runba

    path = tmp_path / "model.safetensors"
    accuracy = _load("mnist_cnn").main(["--smoke", "--save", str(path)])
    assert 0.0 <= accuracy <= 1.0
    state = runba.load(path)
    assert set(state) == {
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
        "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias",
    }  # fmt: skip
    assert state["classifier.0.weight"].shape == (100, 2560)


def test_regression_fits():
    pytest.importorskip("sklearn")
    r2, r2_lstsq = _load("regression").main(["--epochs", "300"])
    # gradient descent reaches the closed-form least-squares optimum
    assert r2 > 0.2
    assert abs(r2 - r2_lstsq) < 0.01
