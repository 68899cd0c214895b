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


def test_gradient_accumulation_is_not_a_larger_batch_for_the_ranking_losses():
    """What the README says: the loss of a batch differs from the mean of its halves' losses, because
    negatives (GroCo), the ranking database (S2R2) and keys (Hydra) come from the call's own items."""
    import torch

    from rankssl.losses import GroCoLoss, HydraLoss, S2R2Loss

    torch.manual_seed(0)
    z0, z1 = torch.randn(16, 8), torch.randn(16, 8)
    labels = torch.arange(4).repeat(4)
    halves = (slice(0, 8), slice(8, 16))
    groco, s2r2, hydra = GroCoLoss(n_negatives=3), S2R2Loss(), HydraLoss(num_classes=4, dim=8, seed=0)
    for name, loss in (("GroCo", lambda a, b, y: groco(a, b)), ("S2R2", lambda a, b, y: s2r2([a, b])),
                       ("Hydra", lambda a, b, y: hydra([a, b], y))):  # one filter for both sides
        whole = loss(z0, z1, labels)
        accumulated = sum(loss(z0[h], z1[h], labels[h]) for h in halves) / 2
        assert torch.isfinite(whole) and torch.isfinite(accumulated)
        assert not torch.allclose(whole, accumulated, rtol=1e-3, atol=1e-4), name


# --- The files around the code: licence, changelog, contributing, citation, one version -------------

DOC_PAGES = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"] + sorted(
    os.path.relpath(p, ROOT) for p in __import__("glob").glob(os.path.join(ROOT, "docs", "*.md")))


def test_licence_changelog_contributing_and_citation_exist():
    assert "MIT License" in _read("LICENSE")
    assert re.search(r'^license = \{ text = "MIT" \}', _read("pyproject.toml"), re.M)
    for name in ("CHANGELOG.md", "CONTRIBUTING.md", "CITATION.cff"):
        assert len(_read(name)) > 500, name
    contributing = _read("CONTRIBUTING.md")
    for command in ("make test", "make lint", "python benchmarks/report.py"):
        assert command in contributing, command


def test_one_version_source_and_every_copy_agrees():
    """pyproject reads rankssl.__version__; CITATION.cff, the changelog's newest entry and the README's
    citation state the same version."""
    import rankssl

    version = rankssl.__version__
    pyproject = _read("pyproject.toml")
    project = pyproject[pyproject.index("[project]\n"):pyproject.index("\n[", pyproject.index("[project]\n"))]
    assert not re.search(r"^version\s*=", project, re.M), "[project] must not hold a static version"
    assert re.search(r'^dynamic = \["version"\]', project, re.M)
    assert re.search(r'^version = \{ attr = "rankssl.__version__" \}', pyproject, re.M)
    assert re.search(r'^__version__ = "([^"]+)"', _read("plugin/__init__.py"), re.M).group(1) == version
    from setuptools.config.pyprojecttoml import read_configuration

    built = read_configuration(os.path.join(ROOT, "pyproject.toml"), expand=True, ignore_option_errors=False)
    assert built["project"]["version"] == version  # what a wheel built from this checkout would say
    assert re.search(r"^version: (\S+)", _read("CITATION.cff"), re.M).group(1) == version
    assert re.search(r"^## (\d+\.\d+\.\d+)", _read("CHANGELOG.md"), re.M).group(1) == version
    assert re.search(r"version = \{([^}]+)\}", _read("README.md")).group(1) == version


def _headings(text):
    """``(level, title)`` of the markdown headings outside code fences."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#{1,6}) (.+?)\s*$", line)):
            headings.append((len(match.group(1)), match.group(2)))
    return headings


def _anchors(text):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen, anchors = {}, set()
    for _, title in _headings(text):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_readme_sections_come_in_the_newcomers_order():
    readme = _read("README.md")
    top = [title for level, title in _headings(readme) if level == 2]
    assert top == ["Contents", "Install", "Quick start", "Train on your own data", "GPU use", "Results",
                   "What rankssl promises", "Layout", "How to cite", "Contributing and licence"]
    assert readme.index("```bash\nmake demo") < readme.index("## Contents")  # the two commands first
    quick = readme[readme.index("## Quick start"):readme.index("## Train on your own data")]
    assert [t for level, t in _headings(quick) if level == 3] == [
        "lightly", "pytorch-metric-learning", "mmengine and the `rankssl` command", "diffsort"]
    results = readme[readme.index("## Results"):readme.index("## What rankssl promises")]
    for name in ("demo-results", "results-digits", "results-two-digits", "results-fashion-mnist"):
        assert results.count(f"<!-- {name}:start -->") == 1, name


def test_readme_keeps_its_guarantees():
    readme = _read("README.md")
    promises = readme[readme.index("## What rankssl promises"):readme.index("## Layout")]
    for phrase in ("### Bad input", "### Second derivatives", "double backward", "### Checkpoints and resume",
                   "Atomic writes", "One run per work dir", ".rankssl.lock", "Resume compares before training",
                   "docs/checkpoints.md"):
        assert phrase in promises, phrase
    for phrase in ("RANKSSL_KERNELS", "Triton", "torch.compile", "--data-root"):
        assert phrase in readme, phrase
    for paper in ("Learning by Sorting", "Self-Supervised Ranking for Representation Learning",
                  "Rethinking Positive Pairs in Contrastive Learning", "@software{rankssl"):
        assert paper in readme[readme.index("## How to cite"):], paper


def test_links_and_anchors_resolve():
    """Every relative link of the README, CONTRIBUTING, CHANGELOG and docs/*.md names a file that exists,
    and every #anchor names a heading of its page."""
    for page in DOC_PAGES:
        text = _read(page)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # an outside address
            path, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            assert os.path.exists(os.path.join(ROOT, linked)), f"{page}: link to missing {target}"
            if anchor and linked.endswith(".md"):
                assert anchor in _anchors(_read(linked)), f"{page}: no heading for #{anchor} in {linked}"


def test_readme_layout_says_where_each_subpackage_lives():
    import importlib.util

    readme = _read("README.md")
    layout = readme[readme.index("## Layout"):readme.index("## How to cite")]
    rows = re.findall(r"^\| `(rankssl[\w.]*)` \| `([^`]+)` \|", layout, re.M)
    assert {name for name, _ in rows} >= {"rankssl", "rankssl.ops", "rankssl.losses", "rankssl.models",
                                          "rankssl.pml", "rankssl.mm", "rankssl.cli", "rankssl.registry",
                                          "rankssl.recipes"}
    for name, folder in rows:
        origin = importlib.util.find_spec(name).origin
        assert os.path.normpath(origin).startswith(os.path.normpath(os.path.join(ROOT, folder.rstrip("/")))), name
