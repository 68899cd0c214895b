"""The distribution: a built wheel holds and imports every subpackage; the core stays light."""

import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"plugin": "rankssl", "registry": "rankssl/registry", "recipes": "rankssl/recipes"}
HOSTS = ("lightly", "pytorch_metric_learning", "mmengine", "mmpretrain")


def _source_modules():
    """Every .py file of the three folders, as its path inside the wheel."""
    for folder, package_path in FOLDERS.items():
        for dirpath, _, filenames in os.walk(os.path.join(ROOT, folder)):
            if "__pycache__" in dirpath:
                continue
            relative = os.path.relpath(dirpath, os.path.join(ROOT, folder))
            for name in filenames:
                if name.endswith(".py"):
                    yield os.path.normpath(os.path.join(package_path, relative, name)).replace(os.sep, "/")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), ROOT],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("rankssl-*.whl")
    return path


@pytest.mark.slow
def test_wheel_contains_every_module_and_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(set(_source_modules()) - names)
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    assert "rankssl/py.typed" in names  # PEP 561 marker: type checkers use the hints
    assert "rankssl/ops/fused/kernels.cpp" in names  # package data: the fused kernels' source
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "rankssl = rankssl.cli:main" in text


@pytest.mark.slow
def test_installed_wheel_imports_every_subpackage(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    packages = sorted(
        {os.path.dirname(m).replace("/", ".") for m in _source_modules() if m.endswith("__init__.py")}
    )
    code = (
        "import importlib, rankssl\n"
        f"assert rankssl.__file__.startswith({str(target)!r}), rankssl.__file__\n"
        f"for name in {packages!r}: importlib.import_module(name)\n"
        "print('ok')"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_core_layers_import_no_host_framework():
    code = (
        "import sys, rankssl, rankssl.ops, rankssl.losses, rankssl.models\n"
        f"loaded = [h for h in {HOSTS!r} if h in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
