"""The Lightning examples (examples/*.py) train at toy size: finite losses, parameters that move."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_lightning")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = {"groco_lightning": "criterion", "s2r2_lightning": "criterion", "hydra_lightning": "criterion"}


def _load(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_trains_at_toy_size(name):
    module = _load(name)
    args = module.parse_args(["--toy", "--max-steps", "2"])
    model = module.build(args)
    before = {key: value.detach().clone() for key, value in model.state_dict().items() if value.is_floating_point()}
    module.fit(model, args)
    assert len(model.losses) == 2 and all(torch.isfinite(torch.tensor(model.losses)))
    after = model.state_dict()
    for part in ("backbone.conv1.weight", "projection_head.layers.0.weight"):
        assert not torch.equal(before[part], after[part]), f"{part} did not change"
    if name == "hydra_lightning":  # the loss's own feature filter is trained too
        changed = [k for k in before if k.startswith("criterion.") and not torch.equal(before[k], after[k])]
        assert changed


def test_every_method_has_an_example():
    assert {p.stem for p in EXAMPLES.glob("*_lightning.py")} == set(SCRIPTS)
