"""Triton kernels for relaxed sorting networks: one launch runs a whole network.

The GPU counterpart of ``kernels.cpp`` (same math, same modes): each program
takes a block of rows, keeps the rows' values and product vectors in registers and
loops over the network's layers. A layer is given per wire by four int32 tables,
``a``, ``b`` (the inputs of the wire's comparator), ``lo``, ``hi`` (the wires receiving
its soft minimum and maximum), so one layer is a handful of ``tl.gather`` calls along
the wire axis, whatever the network (odd-even, bitonic, mirrored bitonic). A wire that
a layer leaves alone has ``a = b = lo = hi`` = itself, which makes every formula
below the identity on it.

Per row, with ``alpha = f(x_b - x_a)`` (:mod:`rankssl.ops.relaxations`):

* value sweep, first layer to last: ``x_lo = x_b + alpha (x_a - x_b)``,
  ``x_hi = x_a + alpha (x_b - x_a)``; the values entering each layer are written to a
  scratch buffer, from which the later sweeps recompute ``alpha`` (cheaper than
  storing it as well);
* product sweep, last to first (``w`` starts as ``v``, ends as ``P @ v``):
  ``w_a = w_hi + alpha (w_lo - w_hi)``, ``w_b = w_lo + alpha (w_hi - w_lo)``;
* backward: the gradient ``g`` of ``P @ v`` walks first to last, giving ``dL/dalpha``
  and ``dL/dv``, then the value sweep is walked back with ``f'``.

The transposed product ``P^T @ v`` (:func:`_transposed_kernel`) carries ``w`` (starting
as ``v``) forward with the values, mixed as the values are mixed:
``w_lo = w_b + alpha (w_a - w_b)``, ``w_hi = w_a + alpha (w_b - w_a)``; one sweep, no
scratch. Its backward keeps the values and ``w`` entering each layer and then walks the
layers once, last to first, giving ``dL/dalpha`` from ``g`` and ``w``,
``g_a = g_hi + alpha (g_lo - g_hi)``, ``g_b = g_lo + alpha (g_hi - g_lo)``, and the
gradient of the values as in the backward above.

Nothing is kept between the forward and the backward call but the inputs. Arithmetic
is float32 for float16, bfloat16 and float32 inputs. This module imports Triton at
import time; :mod:`rankssl.ops.fused` imports it only when the Triton path is chosen.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from rankssl.ops.networks import ComparatorLayer

KINDS = {"logistic": 0, "logistic_phi": 1, "gaussian": 2, "reciprocal": 3, "cauchy": 4, "optimal": 5}
FORWARD, BACKWARD, GROCO = 0, 1, 2
SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)
# Registers per program: rows x vectors x wires (padded) kept at about this many values.
_TILE = 4096

Tables = Tuple[int, int, torch.Tensor]
_TABLES: Dict[Tuple[int, torch.device], Tuple[Sequence[ComparatorLayer], Optional[Tables]]] = {}


def tables(layers: Sequence[ComparatorLayer], device: torch.device) -> Optional[Tables]:
    """``(num_layers, padded_wires, (4, L, NP) int32)``: per layer and wire the wires
    ``a``, ``b``, ``lo``, ``hi``; ``None`` if a comparator writes to wires other than its
    inputs (no network built here does). Cached per network object and device."""
    key = (id(layers), device)
    entry = _TABLES.get(key)
    if entry is not None and entry[0] is layers:
        return entry[1]
    n = int(layers[0].input_order.numel())
    padded = triton.next_power_of_2(n)
    table = torch.arange(padded, dtype=torch.int32).repeat(4, len(layers), 1)
    result: Optional[Tables] = None
    for t, layer in enumerate(layers):
        k = layer.num_comparators
        inputs, outputs = layer.input_order.cpu(), layer.output_order.cpu()
        a, b, lo, hi = inputs[:k], inputs[k : 2 * k], outputs[:k], outputs[k : 2 * k]
        if not bool((((lo == a) & (hi == b)) | ((lo == b) & (hi == a))).all()):
            break
        for index, wire in enumerate((a, b, lo, hi)):
            table[index, t, a] = wire.to(torch.int32)
            table[index, t, b] = wire.to(torch.int32)
    else:
        result = (len(layers), padded, table.to(device).contiguous())
    _TABLES[key] = (layers, result)  # holding `layers` keeps its id unique
    return result


@triton.jit
def _atan(v):
    # Cephes' atanf: range reduction at tan(pi/8) and tan(3pi/8), degree-9 odd polynomial.
    ax = tl.abs(v)
    big = ax > 2.414213562373095
    mid = ax > 0.4142135623730950
    num = tl.where(big, -1.0, tl.where(mid, ax - 1.0, ax))
    den = tl.where(big, ax, tl.where(mid, ax + 1.0, 1.0))
    y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    xr = num / den
    z = xr * xr
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z
    y = y0 + (xr + xr * p)
    return tl.where(v < 0, -y, y)


@triton.jit
def _relax(d, s, lam, KIND: tl.constexpr):
    if KIND == 0:
        alpha = 1.0 / (1.0 + tl.exp(-(d * s)))
    elif KIND == 1:
        u = d * s / tl.exp(lam * tl.log(tl.abs(d) + 1e-10))
        alpha = 1.0 / (1.0 + tl.exp(-u))
    elif KIND == 2:
        alpha = 0.5 + 0.5 * tl.erf(d * (s * 0.7071067811865476))
    elif KIND == 3:
        v = s * d
        alpha = 0.5 * (v / (2.0 + tl.abs(v)) + 1.0)
    elif KIND == 4:
        alpha = _atan(s * d) * 0.3183098861837907 + 0.5
    else:
        v = s * d
        outside = (v > 0.25).to(tl.float32) - (v < -0.25).to(tl.float32)
        clamped = tl.minimum(tl.maximum(v, -0.25), 0.25)
        alpha = clamped + 0.5 + outside * (0.25 - 0.0625 / (tl.abs(v) + 1e-10))
    return alpha


@triton.jit
def _relax_derivative(d, alpha, s, lam, KIND: tl.constexpr):
    if KIND == 0:
        out = alpha * (1.0 - alpha) * s
    elif KIND == 1:
        scale = tl.abs(d) + 1e-10
        inner = s * tl.exp(-lam * tl.log(scale)) * (1.0 - lam * tl.abs(d) / scale)
        out = alpha * (1.0 - alpha) * inner
    elif KIND == 2:
        v = s * d
        out = s * 0.3989422804014327 * tl.exp(-0.5 * v * v)
    elif KIND == 3:
        q = 2.0 + tl.abs(s * d)
        out = s / (q * q)
    elif KIND == 4:
        v = s * d
        out = s / (3.141592653589793 * (1.0 + v * v))
    else:
        v = tl.abs(s * d) + 1e-10
        out = tl.where(tl.abs(s * d) <= 0.25, s, s / (16.0 * v * v))
    return out


@triton.jit
def _pick2(t, idx, BLOCK_R: tl.constexpr, NP: tl.constexpr):
    """``t[r, idx[i]]`` for a (BLOCK_R, NP) tile and an (NP,) wire index."""
    return tl.gather(t, tl.broadcast_to(idx[None, :], (BLOCK_R, NP)), 1)


@triton.jit
def _pick3(t, idx, BLOCK_R: tl.constexpr, MP: tl.constexpr, NP: tl.constexpr):
    """``t[r, j, idx[i]]`` for a (BLOCK_R, MP, NP) tile."""
    return tl.gather(t, tl.broadcast_to(idx[None, None, :], (BLOCK_R, MP, NP)), 2)


@triton.jit
def _value_step_back(
    gx,
    galpha_w,
    d,
    alpha,
    ta,
    tb,
    tlo,
    thi,
    wires,
    steepness,
    art_lambda,
    KIND: tl.constexpr,
    BLOCK_R: tl.constexpr,
    NP: tl.constexpr,
):
    """One layer of the value sweep walked back: ``gx`` (BLOCK_R, NP), the values' gradient
    at the layer's outputs, becomes the gradient at its inputs, given ``galpha_w``, the
    product sweep's part of dL/dalpha, and the layer's ``d = x_b - x_a`` and ``alpha``."""
    gmin = _pick2(gx, tlo, BLOCK_R, NP)
    gmax = _pick2(gx, thi, BLOCK_R, NP)
    galpha = galpha_w - (gmin - gmax) * d
    gd = galpha * _relax_derivative(d, alpha, steepness, art_lambda, KIND)
    gd = tl.where((ta == tb)[None, :], 0.0, gd)
    return tl.where((wires == ta)[None, :], gmax + alpha * (gmin - gmax) - gd, gmin + alpha * (gmax - gmin) + gd)


@triton.jit
def _network_kernel(
    X,
    V,
    GRAD_OUT,
    OUT,
    GRAD_X,
    GRAD_V,
    XS,
    WS,
    GS,
    TABLE,
    rows,
    n,
    m,
    num_layers,
    num_neg,
    v_row_stride,
    steepness,
    art_lambda,
    KIND: tl.constexpr,
    MODE: tl.constexpr,
    NP: tl.constexpr,
    MP: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    pid = tl.program_id(0)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    wires = tl.arange(0, NP)
    cols = tl.arange(0, MP)
    row_ok = r < rows
    wire_ok = wires < n
    mask2 = row_ok[:, None] & wire_ok[None, :]
    mask3 = row_ok[:, None, None] & (cols[None, :, None] < m) & wire_ok[None, None, :]
    r64 = r.to(tl.int64)
    tstride = num_layers * NP  # one table (a, b, lo or hi)
    # Scratch rows are indexed by the program's slot so that padding rows stay in bounds.
    xs_row = XS + (r64[:, None] * num_layers) * NP + wires[None, :]
    # (rows, n, m) element (r, i, j) of a tile laid out as [row, column, wire].
    off3 = r64[:, None, None] * n * m + wires[None, None, :] * m + cols[None, :, None]

    # 1. Value sweep; the values entering layer t go to XS[r, t].
    x = tl.load(X + r64[:, None] * n + wires[None, :], mask=mask2, other=0.0).to(tl.float32)
    for t in range(num_layers):
        ta = tl.load(TABLE + t * NP + wires)
        tb = tl.load(TABLE + tstride + t * NP + wires)
        tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
        tl.store(xs_row + t * NP, x)
        xa = _pick2(x, ta, BLOCK_R, NP)
        xb = _pick2(x, tb, BLOCK_R, NP)
        alpha = _relax(xb - xa, steepness, art_lambda, KIND)
        x = tl.where((wires == tlo)[None, :], xb + alpha * (xa - xb), xa + alpha * (xb - xa))
    tl.debug_barrier()

    # 2. Product sweep, last layer to first; the w that layer t multiplies goes to WS[r, t].
    if MODE == 2:
        ones = tl.where(wires >= num_neg, 1.0, 0.0)
        w = tl.broadcast_to(ones[None, None, :], (BLOCK_R, MP, NP)).to(tl.float32)
    else:
        v_off = r64[:, None, None] * v_row_stride + wires[None, None, :] * m + cols[None, :, None]
        w = tl.load(V + v_off, mask=mask3, other=0.0).to(tl.float32)
    ws_row = WS + ((r64[:, None, None] * num_layers) * MP + cols[None, :, None]) * NP + wires[None, None, :]
    for step in range(num_layers):
        t = num_layers - 1 - step
        ta = tl.load(TABLE + t * NP + wires)
        tb = tl.load(TABLE + tstride + t * NP + wires)
        tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
        thi = tl.load(TABLE + 3 * tstride + t * NP + wires)
        xt = tl.load(xs_row + t * NP)
        alpha = _relax(_pick2(xt, tb, BLOCK_R, NP) - _pick2(xt, ta, BLOCK_R, NP), steepness, art_lambda, KIND)
        if MODE != 0:
            tl.store(ws_row + t * MP * NP, w)
        wl = _pick3(w, tlo, BLOCK_R, MP, NP)
        wh = _pick3(w, thi, BLOCK_R, MP, NP)
        a3 = alpha[:, None, :]
        w = tl.where((wires == ta)[None, None, :], wh + a3 * (wl - wh), wl + a3 * (wh - wl))

    if MODE == 0:
        tl.store(OUT + off3, w.to(OUT.dtype.element_ty), mask=mask3)
    else:
        # 3. The gradient of P @ v: given, or that of GroCo's loss.
        if MODE == 2:
            # Mean over the n inputs of BCE(clamp(q, 0, 1), target) as torch computes it
            # (log clamped at -100, gradient (q - t) / max(q (1 - q), 1e-12), zero where
            # the clamp cuts); target 1 for the positives (inputs K..n-1).
            raw = tl.sum(w, axis=1)  # MP == 1
            q = tl.where(wire_ok[None, :], tl.minimum(tl.maximum(raw, 0.0), 1.0), 0.5)  # padding: no log(0)
            positive = (wires >= num_neg)[None, :]
            log_term = tl.maximum(tl.where(positive, tl.log(q), tl.log(1.0 - q)), -100.0)
            log_term = tl.where(wire_ok[None, :], log_term, 0.0)
            inv_n = 1.0 / n  # float division (n >= 2, never specialised to a constant)
            loss = -tl.sum(log_term, axis=1) * inv_n
            tl.store(OUT + r64, loss.to(OUT.dtype.element_ty), mask=row_ok)
            target = tl.where(positive, 1.0, 0.0)
            denom = tl.maximum(q * (1.0 - q), 1e-12)
            gq = tl.where((raw >= 0.0) & (raw <= 1.0) & wire_ok[None, :], (q - target) / denom, 0.0) * inv_n
            g = gq[:, None, :]
        else:
            g = tl.load(GRAD_OUT + off3, mask=mask3, other=0.0).to(tl.float32)
        tl.debug_barrier()

        # 4. First layer to last through w_{t-1} = M_t w_t: dL/dalpha to GS[r, t], g = M_t^T g.
        gs_row = GS + (r64[:, None] * num_layers) * NP + wires[None, :]
        for t in range(num_layers):
            ta = tl.load(TABLE + t * NP + wires)
            tb = tl.load(TABLE + tstride + t * NP + wires)
            tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
            thi = tl.load(TABLE + 3 * tstride + t * NP + wires)
            xt = tl.load(xs_row + t * NP)
            alpha = _relax(_pick2(xt, tb, BLOCK_R, NP) - _pick2(xt, ta, BLOCK_R, NP), steepness, art_lambda, KIND)
            wt = tl.load(ws_row + t * MP * NP)
            ga = _pick3(g, ta, BLOCK_R, MP, NP)
            gb = _pick3(g, tb, BLOCK_R, MP, NP)
            dw = _pick3(wt, tlo, BLOCK_R, MP, NP) - _pick3(wt, thi, BLOCK_R, MP, NP)
            tl.store(gs_row + t * NP, tl.sum((ga - gb) * dw, axis=1))
            a3 = alpha[:, None, :]
            g = tl.where((wires == tlo)[None, None, :], gb + a3 * (ga - gb), ga + a3 * (gb - ga))
        if MODE == 1:
            tl.store(GRAD_V + off3, g.to(GRAD_V.dtype.element_ty), mask=mask3)
        tl.debug_barrier()

        # 5. Back through the value sweep, last layer to first.
        gx = tl.zeros((BLOCK_R, NP), dtype=tl.float32)
        for step in range(num_layers):
            t = num_layers - 1 - step
            ta = tl.load(TABLE + t * NP + wires)
            tb = tl.load(TABLE + tstride + t * NP + wires)
            tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
            thi = tl.load(TABLE + 3 * tstride + t * NP + wires)
            xt = tl.load(xs_row + t * NP)
            d = _pick2(xt, tb, BLOCK_R, NP) - _pick2(xt, ta, BLOCK_R, NP)
            alpha = _relax(d, steepness, art_lambda, KIND)
            galpha_w = tl.load(gs_row + t * NP)
            gx = _value_step_back(
                gx, galpha_w, d, alpha, ta, tb, tlo, thi, wires, steepness, art_lambda, KIND, BLOCK_R, NP
            )
        tl.store(GRAD_X + r64[:, None] * n + wires[None, :], gx.to(GRAD_X.dtype.element_ty), mask=mask2)


@triton.jit
def _transposed_kernel(
    X,
    V,
    GRAD_OUT,
    OUT,
    GRAD_X,
    GRAD_V,
    XS,
    WS,
    TABLE,
    rows,
    n,
    m,
    num_layers,
    v_row_stride,
    steepness,
    art_lambda,
    KIND: tl.constexpr,
    BACKWARD: tl.constexpr,
    NP: tl.constexpr,
    MP: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    pid = tl.program_id(0)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    wires = tl.arange(0, NP)
    cols = tl.arange(0, MP)
    row_ok = r < rows
    wire_ok = wires < n
    mask2 = row_ok[:, None] & wire_ok[None, :]
    mask3 = row_ok[:, None, None] & (cols[None, :, None] < m) & wire_ok[None, None, :]
    r64 = r.to(tl.int64)
    tstride = num_layers * NP
    xs_row = XS + (r64[:, None] * num_layers) * NP + wires[None, :]
    ws_row = WS + ((r64[:, None, None] * num_layers) * MP + cols[None, :, None]) * NP + wires[None, None, :]
    off3 = r64[:, None, None] * n * m + wires[None, None, :] * m + cols[None, :, None]

    # 1. Values and w together, first layer to last (the backward keeps what enters each layer).
    x = tl.load(X + r64[:, None] * n + wires[None, :], mask=mask2, other=0.0).to(tl.float32)
    v_off = r64[:, None, None] * v_row_stride + wires[None, None, :] * m + cols[None, :, None]
    w = tl.load(V + v_off, mask=mask3, other=0.0).to(tl.float32)
    for t in range(num_layers):
        ta = tl.load(TABLE + t * NP + wires)
        tb = tl.load(TABLE + tstride + t * NP + wires)
        tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
        if BACKWARD:
            tl.store(xs_row + t * NP, x)
            tl.store(ws_row + t * MP * NP, w)
        xa = _pick2(x, ta, BLOCK_R, NP)
        xb = _pick2(x, tb, BLOCK_R, NP)
        alpha = _relax(xb - xa, steepness, art_lambda, KIND)
        to_lo = wires == tlo
        x = tl.where(to_lo[None, :], xb + alpha * (xa - xb), xa + alpha * (xb - xa))
        wa = _pick3(w, ta, BLOCK_R, MP, NP)
        wb = _pick3(w, tb, BLOCK_R, MP, NP)
        a3 = alpha[:, None, :]
        w = tl.where(to_lo[None, None, :], wb + a3 * (wa - wb), wa + a3 * (wb - wa))

    if not BACKWARD:
        tl.store(OUT + off3, w.to(OUT.dtype.element_ty), mask=mask3)
    else:
        tl.debug_barrier()
        # 2. Last layer to first: g (the gradient of w) back through each layer's mixing,
        #    dL/dalpha from g and the w that entered the layer, and the values' gradient.
        g = tl.load(GRAD_OUT + off3, mask=mask3, other=0.0).to(tl.float32)
        gx = tl.zeros((BLOCK_R, NP), dtype=tl.float32)
        for step in range(num_layers):
            t = num_layers - 1 - step
            ta = tl.load(TABLE + t * NP + wires)
            tb = tl.load(TABLE + tstride + t * NP + wires)
            tlo = tl.load(TABLE + 2 * tstride + t * NP + wires)
            thi = tl.load(TABLE + 3 * tstride + t * NP + wires)
            xt = tl.load(xs_row + t * NP)
            d = _pick2(xt, tb, BLOCK_R, NP) - _pick2(xt, ta, BLOCK_R, NP)
            alpha = _relax(d, steepness, art_lambda, KIND)
            wt = tl.load(ws_row + t * MP * NP)
            gl = _pick3(g, tlo, BLOCK_R, MP, NP)
            gh = _pick3(g, thi, BLOCK_R, MP, NP)
            dw = _pick3(wt, ta, BLOCK_R, MP, NP) - _pick3(wt, tb, BLOCK_R, MP, NP)
            galpha_w = tl.sum((gl - gh) * dw, axis=1)
            a3 = alpha[:, None, :]
            g = tl.where((wires == ta)[None, None, :], gh + a3 * (gl - gh), gl + a3 * (gh - gl))
            gx = _value_step_back(
                gx, galpha_w, d, alpha, ta, tb, tlo, thi, wires, steepness, art_lambda, KIND, BLOCK_R, NP
            )
        tl.store(GRAD_V + off3, g.to(GRAD_V.dtype.element_ty), mask=mask3)
        tl.store(GRAD_X + r64[:, None] * n + wires[None, :], gx.to(GRAD_X.dtype.element_ty), mask=mask2)


def _launch_transposed(layers, distribution, steepness, art_lambda, x, v, grad_out=None):
    """``P^T @ v`` (R, n, m) in x's dtype, or with ``grad_out`` its gradients
    ``(grad_x (R, n) in x's dtype, grad_v_rows (R, n, m) float32)``."""
    network = tables(layers, x.device)
    if network is None:
        raise ValueError("the Triton kernels take networks whose comparators write to their own input wires")
    num_layers, padded, table = network
    rows, n = x.shape
    m = v.shape[-1]
    mp = triton.next_power_of_2(m)
    block_r = max(1, min(64, triton.next_power_of_2(max(rows, 1)), _TILE // (mp * padded)))
    programs = triton.cdiv(rows, block_r)
    backward = grad_out is not None
    f32 = dict(dtype=torch.float32, device=x.device)
    if backward:
        slots = programs * block_r
        xs = torch.empty(slots, num_layers, padded, **f32)
        ws = torch.empty(slots, num_layers, mp, padded, **f32)
        out, grad_x = x, torch.empty(rows, n, dtype=x.dtype, device=x.device)
        grad_v = torch.empty(rows, n, m, **f32)
    else:
        xs = ws = x  # no scratch: one sweep
        out = torch.empty(rows, n, m, dtype=x.dtype, device=x.device)
        grad_x = grad_v = x
    v_stride = 0 if v.dim() == 2 else n * m
    _transposed_kernel[(programs,)](
        x,
        v,
        x if grad_out is None else grad_out,
        out,
        grad_x,
        grad_v,
        xs,
        ws,
        table,
        rows,
        n,
        m,
        num_layers,
        v_stride,
        float(steepness),
        float(art_lambda),
        KIND=KINDS[distribution],
        BACKWARD=backward,
        NP=padded,
        MP=mp,
        BLOCK_R=block_r,
    )
    return (grad_x, grad_v) if backward else out


def _launch(layers, distribution, steepness, art_lambda, mode, x, v=None, grad_out=None, num_neg=0):
    """Run one network pass over the rows of ``x`` (R, n); see the module docstring.

    Returns ``out`` (FORWARD: (R, n, m) in x's dtype), ``(grad_x, grad_v_rows)``
    (BACKWARD) or ``(loss, grad)`` (GROCO).
    """
    network = tables(layers, x.device)
    if network is None:
        raise ValueError("the Triton kernels take networks whose comparators write to their own input wires")
    num_layers, padded, table = network
    rows, n = x.shape
    m = 1 if v is None else v.shape[-1]
    mp = triton.next_power_of_2(m)
    block_r = max(1, min(64, triton.next_power_of_2(max(rows, 1)), _TILE // (mp * padded)))
    programs = triton.cdiv(rows, block_r)
    slots = programs * block_r
    f32 = dict(dtype=torch.float32, device=x.device)
    xs = torch.empty(slots, num_layers, padded, **f32)
    ws = torch.empty(slots, num_layers, mp, padded, **f32) if mode != FORWARD else xs
    gs = torch.empty(slots, num_layers, padded, **f32) if mode != FORWARD else xs
    out = grad_x = grad_v = None
    if mode == FORWARD:
        out = torch.empty(rows, n, m, dtype=x.dtype, device=x.device)
    elif mode == BACKWARD:
        grad_x = torch.empty(rows, n, dtype=x.dtype, device=x.device)
        grad_v = torch.empty(rows, n, m, dtype=torch.float32, device=x.device)
    else:
        out = torch.empty(rows, dtype=x.dtype, device=x.device)
        grad_x = torch.empty(rows, n, dtype=x.dtype, device=x.device)
    v_arg = x if v is None else v
    v_stride = 0 if v is None or v.dim() == 2 else n * m
    dummy = x
    _network_kernel[(programs,)](
        x,
        v_arg,
        dummy if grad_out is None else grad_out,
        dummy if out is None else out,
        dummy if grad_x is None else grad_x,
        dummy if grad_v is None else grad_v,
        xs,
        ws,
        gs,
        table,
        rows,
        n,
        m,
        num_layers,
        num_neg,
        v_stride,
        float(steepness),
        float(art_lambda),
        KIND=KINDS[distribution],
        MODE=mode,
        NP=padded,
        MP=mp,
        BLOCK_R=block_r,
    )
    if mode == FORWARD:
        return out
    if mode == BACKWARD:
        return grad_x, grad_v
    return out, grad_x


def permutation_matmul(x, v, layers, distribution, steepness, art_lambda, transpose=False) -> torch.Tensor:
    """``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``) for ``x`` (R, n) and ``v``
    (n, m) or (R, n, m), contiguous: (R, n, m)."""
    if x.shape[0] == 0 or v.shape[-1] == 0:
        return x.new_zeros(x.shape[0], x.shape[1], v.shape[-1])
    if transpose:
        return _launch_transposed(layers, distribution, steepness, art_lambda, x, v)
    return _launch(layers, distribution, steepness, art_lambda, FORWARD, x, v=v)


def permutation_matmul_backward(grad_out, x, v, layers, distribution, steepness, art_lambda, transpose=False):
    """Gradients of ``P(x) @ v`` (``P(x)^T @ v`` with ``transpose``): ``grad_x`` (R, n)
    in x's dtype and the per-row gradient of ``v``, (R, n, m) float32."""
    if x.shape[0] == 0 or v.shape[-1] == 0:
        return torch.zeros_like(x), x.new_zeros(x.shape[0], x.shape[1], v.shape[-1], dtype=torch.float32)
    if transpose:
        return _launch_transposed(layers, distribution, steepness, art_lambda, x, v, grad_out=grad_out)
    return _launch(layers, distribution, steepness, art_lambda, BACKWARD, x, v=v, grad_out=grad_out)


def group_ordering_mass_loss(scores, num_neg, layers, distribution, steepness, art_lambda):
    """GroCo's per-row loss (R,) and its gradient (R, n) in one pass; see
    :func:`rankssl.ops.fused.group_ordering_mass_loss`."""
    if scores.shape[0] == 0:
        return scores.new_zeros(0), torch.zeros_like(scores)
    return _launch(layers, distribution, steepness, art_lambda, GROCO, scores, num_neg=num_neg)
