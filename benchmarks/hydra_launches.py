"""Hydra's launches, host syncs and CPU time per forward + backward at B = 256 against pml's SupConLoss.

Counted below autograd with benchmarks/launch_count.py under validation_mode("lazy") (the code path
a CUDA tensor takes); CPU times are medians of 21 interleaved steps in one process. Run with
OMP_NUM_THREADS=1: ``python benchmarks/hydra_launches.py [--variant]``.
"""
import sys, time, torch
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launch_count import LaunchCounter
from rankssl.ops.validation import validation_mode, flush
from rankssl.losses import HydraLoss
from rankssl.pml import HydraLoss as PH
from pytorch_metric_learning.losses import SupConLoss
torch.manual_seed(0)
B, D, C = 256, 128, 10
z0 = torch.randn(B, D, requires_grad=True); z1 = torch.randn(B, D, requires_grad=True)
y = torch.arange(B) % C
from rankssl.losses.hydra import RANKSSL_VARIANT
extra = RANKSSL_VARIANT if "--variant" in sys.argv else {}  # default: SimLAP
L = HydraLoss(C, D, seed=0, **extra); P = PH(C, D, seed=0); S = SupConLoss()
def clear(*mods):
    z0.grad = z1.grad = None
    for m in mods:
        for p in m.parameters(): p.grad = None
def lstep(): clear(L); L([z0, z1], y).backward()
def pstep(): clear(P); P(torch.cat([z0, z1]), torch.cat([y, y])).backward()
def sstep(): clear(); S(torch.cat([z0, z1]), torch.cat([y, y])).backward()
fs = {"lightly HydraLoss([z0, z1], y)": lstep, "pml HydraLoss(cat(z0, z1), cat(y, y))": pstep, "pml SupConLoss(cat(z0, z1), cat(y, y))": sstep}
res = {}
with validation_mode("lazy"):
    for k, f in fs.items():
        f()
        with LaunchCounter() as c:
            f()
        res[k] = (c.launches, c.syncs, dict(c.syncs_by_name))
    flush()
times = {k: [] for k in fs}
for _ in range(21):
    for k, f in fs.items():
        t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
peer = res["pml SupConLoss(cat(z0, z1), cat(y, y))"][0]
for k, (l, s, by) in res.items():
    print(f"{k}: launches {l} syncs {s} {by} CPU median {sorted(times[k])[10]*1e3:.1f} ms")
for k, (l, s, _) in list(res.items())[:2]:
    met = "met" if l <= peer and s == 0 else "NOT met"
    print(f"target (launches <= SupCon's {peer}, no sync) for {k.split('(')[0].strip()}: {met}")
