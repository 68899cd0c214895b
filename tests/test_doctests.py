"""Every docstring example (``>>>``) in the rankssl package runs and prints what it shows.

One test per module that has examples. Output is compared with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE``, so an example may elide the digits that vary across machines
(``tensor(0.69...)``) and wrap long output freely. The random generators are seeded
before each docstring, so an example that draws random inputs draws the same ones on
every run.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import random
import re
from typing import List

import numpy as np
import pytest
import torch

import rankssl

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# A docstring line that starts an example: ">>> " after the indentation.
_PROMPT = re.compile(r"^\s*>>>( |$)", re.MULTILINE)


def _walk() -> List[str]:
    """The modules of the package, by name, without importing the leaves.

    Skipped: ``rankssl.__main__`` (importing it runs the command line) and the recipe
    files under ``rankssl.recipes`` (mmengine configs, not modules to import; the
    package's own ``__init__`` is kept).
    """
    names = ["rankssl"]
    for info in pkgutil.walk_packages(rankssl.__path__, "rankssl."):
        if info.name == "rankssl.__main__" or info.name.startswith("rankssl.recipes."):
            continue
        names.append(info.name)
    return sorted(names)


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


def _prompt_count(name: str) -> int:
    return len(_PROMPT.findall(_source(name)))


MODULES_WITH_EXAMPLES = [name for name in _walk() if _prompt_count(name)]


def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def test_examples_were_found():
    # A walk that finds nothing (a broken package-dir mapping) must not pass silently.
    assert len(MODULES_WITH_EXAMPLES) >= 30, MODULES_WITH_EXAMPLES
    assert "rankssl.ops.sorting" in MODULES_WITH_EXAMPLES


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name: str, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    monkeypatch.delenv("RANKSSL_KERNELS", raising=False)
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    found = sum(len(t.examples) for t in tests)
    # Every ">>>" line in the file is one example the finder must see: an example in a
    # docstring the finder skips (an object it does not count as the module's) would never run.
    assert found == _prompt_count(name), (
        f"{name}: the finder sees {found} examples, the source has {_prompt_count(name)} '>>>' lines"
    )
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: List[str] = []
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        _seed()
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
