"""The set-up facts a newcomer meets first: the Python version, activating .venv, the digits' source."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_python_requirement_is_torch_2_14s_and_the_readme_says_so():
    pyproject = _read("pyproject.toml")
    assert re.search(r'^requires-python = ">=3\.10"', pyproject, re.M)
    assert '"torch>=2.1,<=2.14.1"' in pyproject  # 2.14.1 ships wheels for Python 3.10+ only
    readme = _read("README.md")
    assert "Python 3.10+" in readme and "Python 3.9" not in readme


def test_readme_says_to_activate_the_venv_and_names_the_digits_generator():
    readme = _read("README.md")
    assert "source .venv/bin/activate" in readme
    assert "rankssl.mm.digits.make_digits_canvas" in readme
    from rankssl.mm.digits import make_digits_canvas

    images, labels = make_digits_canvas("test")
    assert images.shape == (360, 32, 32) and str(images.dtype) == "uint8" and labels.shape == (360,)
