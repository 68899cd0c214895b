"""Entry-point plugins: a working plugin is listed; a broken or exiting one is reported by name and skipped;
one taking a name rankssl has is refused and reported."""

import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = textwrap.dedent('''
    import torch
    from rankssl.registry import MODELS

    class TinyLoss(torch.nn.Module):
        def forward(self, *views):
            return sum(v.sum() for v in views) * 0

    MODELS.register_module(module=TinyLoss)
''')
EXITING = "import sys\nsys.exit(3)\n"
GREEDY = textwrap.dedent('''
    import torch
    from rankssl.registry import MODELS

    class GroCoLoss(torch.nn.Module):  # a name rankssl already has
        def forward(self, *views):
            return torch.zeros(())

    class GreedyExtraLoss(GroCoLoss):
        pass

    MODELS.register_module(module=GroCoLoss, force=True)
    MODELS.register_module(module=GreedyExtraLoss)
''')


def _make_dist(root, dist_name, entry_points, module_name=None, module_code=None):
    info = os.path.join(root, f"{dist_name}-0.1.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[rankssl.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    if module_name:
        with open(os.path.join(root, module_name + ".py"), "w") as f:
            f.write(module_code)


@pytest.mark.slow
def test_plugin_listed_and_broken_plugin_skipped(tmp_path):
    """Also: a plugin calling sys.exit() is isolated; a plugin taking rankssl's name is refused and reported."""
    _make_dist(str(tmp_path), "tiny_rankssl_plugin", {"tiny": "tiny_plugin"}, "tiny_plugin", PLUGIN)
    _make_dist(str(tmp_path), "broken_rankssl_plugin", {"broken": "broken_plugin"}, "broken_plugin",
               "raise ImportError('this plugin is broken on purpose')\n")
    _make_dist(str(tmp_path), "exiting_rankssl_plugin", {"exiting": "exiting_plugin"}, "exiting_plugin", EXITING)
    _make_dist(str(tmp_path), "greedy_rankssl_plugin", {"greedy": "greedy_plugin"}, "greedy_plugin", GREEDY)
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "rankssl", "list"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    tiny = [l for l in lines if " TinyLoss " in l]
    assert tiny and "plugin tiny" in tiny[0] and tiny[0].startswith("model")
    assert any(" GroCoLoss " in l and "lightly, pml, mmengine" in l for l in lines)
    assert "plugin 'broken' failed to load and was skipped" in proc.stdout
    assert "broken" in proc.stderr and "this plugin is broken on purpose" in proc.stderr  # the warning
    # sys.exit(3) in a plugin does not end rankssl (returncode 0 above)
    assert "plugin 'exiting' failed to load and was skipped: called sys.exit(3)" in proc.stdout
    assert "exiting" in proc.stderr and "sys.exit(3)" in proc.stderr
    # rankssl's GroCoLoss is what builds use and what the list shows; the plugin's other name is listed
    rows = {line.split()[1]: line for line in lines if len(line.split()) > 3}
    assert rows["GroCoLoss"].rstrip().endswith("rankssl.losses.groco")
    assert "plugin greedy" in rows["GreedyExtraLoss"]
    assert "greedy_plugin.GroCoLoss" in proc.stderr and "rankssl.losses.groco.GroCoLoss" in proc.stderr
    assert "plugin 'greedy' also registers model 'GroCoLoss': ignored (greedy_plugin.GroCoLoss)" in proc.stdout
    # the working plugin's component builds by prefix, plugins load lazily with the registry
    code = ("import sys, rankssl; assert 'tiny_plugin' not in sys.modules; "
            "from mmengine.registry import MODELS; print(type(MODELS.build(dict(type='rankssl.GroCoLoss'))).__module__); "
            "print(type(MODELS.build(dict(type='rankssl.TinyLoss'))).__name__)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("rankssl.losses.groco\nTinyLoss")

