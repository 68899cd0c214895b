"""Entry-point plugins: a working plugin is listed, a broken one is reported by name and skipped."""

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
    _make_dist(str(tmp_path), "tiny_rankssl_plugin", {"tiny": "tiny_plugin"}, "tiny_plugin", PLUGIN)
    _make_dist(str(tmp_path), "broken_rankssl_plugin", {"broken": "broken_plugin"}, "broken_plugin",
               "raise ImportError('this plugin is broken on purpose')\n")
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
    # the working plugin's component builds by prefix, plugins load lazily with the registry
    code = ("import sys, rankssl; assert 'tiny_plugin' not in sys.modules; "
            "from mmengine.registry import MODELS; print(type(MODELS.build(dict(type='rankssl.TinyLoss'))).__name__)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TinyLoss")
