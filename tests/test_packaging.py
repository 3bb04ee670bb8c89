"""Packaging: every package is listed, and runba.kernels imports from editable and wheel
installs (kernels/ lives at the top level and is mapped into the runba package)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages():
    with open(ROOT / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def _package_dirs():
    found = set()
    for base, prefix in ((ROOT / "src" / "runba", "runba"), (ROOT / "kernels", "runba.kernels")):
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            parts = [p for p in rel.parts if p]
            found.add(".".join([prefix, *parts]))
    return found


def test_every_package_directory_is_declared():
    declared, _ = _declared_packages()
    missing = _package_dirs() - declared
    assert not missing, (
        f"add these packages to pyproject.toml [tool.setuptools] packages: {missing}"
    )
    stale = declared - _package_dirs()
    assert not stale, f"pyproject.toml lists packages that do not exist: {stale}"


def test_top_level_layout():
    allowed = {"pyproject.toml", "src", "kernels", "tests", "examples", "docs", "README.md",
               "LICENSE", ".ci", ".gitignore"}  # fmt: skip
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    top = {p.split("/")[0] for p in tracked}
    assert top <= allowed, f"unexpected top-level entries: {top - allowed}"


def test_kernels_import_from_this_install():
    import runba.kernels
    import runba.kernels.cpu

    assert Path(runba.kernels.__file__).name == "__init__.py"
    assert Path(runba.kernels.cpu.__file__).parent.name == "cpu"


def test_kernels_import_from_built_wheel(tmp_path):
    wheel_dir = tmp_path / "wheel"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheel_dir)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{r.stdout}\n{r.stderr}")
    (wheel,) = wheel_dir.glob("runba-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "runba/kernels/__init__.py" in names
    assert "runba/kernels/cpu/__init__.py" in names
    assert not any(n.startswith("kernels/") for n in names), "kernels must install inside runba"

    target = tmp_path / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    code = "import runba.kernels, runba; print(runba.kernels.__file__); print(runba.__file__)"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    kernels_file, runba_file = r.stdout.split()
    assert kernels_file.startswith(str(target)), kernels_file
    assert runba_file.startswith(str(target)), runba_file
