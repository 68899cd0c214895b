// Fused CPU kernels for relaxed sorting networks (rankssl.ops.fused).
//
// One call runs every layer of a network over a block of R rows held in a small
// per-thread scratch with layout [wire][row], so every comparator is a SIMD operation
// over R rows and nothing but the inputs and outputs touches main memory. The math is
// that of rankssl/ops/permutation_matmul.py (the pure-torch reference):
//
//   value sweep, first layer to last:  d = x_b - x_a, alpha = f(d),
//       x_min = x_b + alpha (x_a - x_b),  x_max = x_a + alpha (x_b - x_a)
//   product sweep, last layer to first (w starts as v, ends as P @ v):
//       w_a = alpha w_min + (1 - alpha) w_max,  w_b = (1 - alpha) w_min + alpha w_max
//   backward: g (gradient of P @ v) first to last gives dL/dalpha and dL/dv; then the
//   value sweep is walked back, last to first, with f'(d).
//   transposed (P^T @ v): w starts as v and is carried first to last with the values,
//       w_min = w_b + alpha (w_a - w_b),  w_max = w_a + alpha (w_b - w_a);
//   its backward walks last to first once: dL/dalpha = sum_j (g_min - g_max)(w_a - w_b)
//   with the w entering the layer, g_a = g_max + alpha (g_min - g_max),
//   g_b = g_min + alpha (g_max - g_min), and the values' gradient as above.
//
// Plain C ABI (loaded with ctypes): no torch headers, so it builds in seconds.
//
// Threads: no OpenMP runtime. A call with threads > 1 starts threads - 1 detached helpers
// that take blocks from a shared counter, as the calling thread does; the caller sleeps
// on a condition variable only until every block is done, never for a helper that has
// not been scheduled yet. On a busy machine a late or descheduled helper therefore costs
// nothing, where an OpenMP team waits at its barrier for every member (and spins while
// it waits). `#pragma omp simd` only asks for vectorisation (-fopenmp-simd).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__SSE__)
#include <xmmintrin.h>
#define RANKSSL_HAS_MXCSR 1
#endif

// Gradients that pass through many relaxed layers decay into subnormal numbers, which
// cost x86 CPUs about a hundred cycles per operation (a 10x slower backward at n = 128,
// odd-even). Flush them to zero for the duration of a call, in every thread; results
// change only below 1e-38 (float32) / 1e-308 (float64).
struct FlushSubnormals {
#ifdef RANKSSL_HAS_MXCSR
  unsigned int saved;
  FlushSubnormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushSubnormals() { _mm_setcsr(saved); }
#endif
};

namespace {

enum Kind { LOGISTIC = 0, LOGISTIC_PHI = 1, GAUSSIAN = 2, RECIPROCAL = 3, CAUCHY = 4, OPTIMAL = 5 };

struct Net {
  int64_t n, layers, comparators;
  const int32_t* ptr;  // (layers + 1) offsets into the comparator arrays
  const int32_t* a;    // wire a of every comparator
  const int32_t* b;    // wire b
  const int32_t* lo;   // wire receiving the soft minimum
  const int32_t* hi;   // wire receiving the soft maximum
};

// atan for float32 without a library call, branch-free so that it vectorises:
// Cephes' atanf (range reduction at tan(pi/8), tan(3pi/8) and a degree-9 odd
// polynomial), relative error below 2e-7, i.e. float32-exact up to one or two ulp.
static inline float atan_f32(float v) {
  float ax = std::fabs(v);
  bool big = ax > 2.414213562373095f;
  bool mid = ax > 0.4142135623730950f;
  float num = big ? -1.0f : (mid ? ax - 1.0f : ax);
  float den = big ? ax : (mid ? ax + 1.0f : 1.0f);
  float y0 = big ? 1.5707963267948966f : (mid ? 0.7853981633974483f : 0.0f);
  float xr = num / den;
  float z = xr * xr;
  float p = (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f) * z;
  float y = y0 + (xr + xr * p);
  return std::copysign(y, v);
}

static inline double atan_any(double v) { return std::atan(v); }
static inline float atan_any(float v) { return atan_f32(v); }

template <typename T, int K>
static inline T relax(T d, T s, T lam) {
  if (K == LOGISTIC) return T(1) / (T(1) + std::exp(-(d * s)));
  if (K == LOGISTIC_PHI) {
    T u = d * s / std::pow(std::fabs(d) + T(1e-10), lam);
    return T(1) / (T(1) + std::exp(-u));
  }
  if (K == GAUSSIAN) return T(0.5) + T(0.5) * std::erf(d * (s * T(0.7071067811865476)));
  if (K == RECIPROCAL) {
    T v = s * d;
    return T(0.5) * (v / (T(2) + std::fabs(v)) + T(1));
  }
  if (K == CAUCHY) return atan_any(s * d) * T(0.3183098861837907) + T(0.5);
  // OPTIMAL
  T v = s * d;
  T outside = (v > T(0.25) ? T(1) : T(0)) - (v < T(-0.25) ? T(1) : T(0));
  T clamped = v < T(-0.25) ? T(-0.25) : (v > T(0.25) ? T(0.25) : v);
  return clamped + T(0.5) + outside * (T(0.25) - T(1) / T(16) / (std::fabs(v) + T(1e-10)));
}

// d alpha / d d, given d and alpha.
template <typename T, int K>
static inline T relax_derivative(T d, T alpha, T s, T lam) {
  if (K == LOGISTIC) return alpha * (T(1) - alpha) * s;
  if (K == LOGISTIC_PHI) {
    T scale = std::fabs(d) + T(1e-10);
    T inner = s * std::pow(scale, -lam) * (T(1) - lam * std::fabs(d) / scale);
    return alpha * (T(1) - alpha) * inner;
  }
  if (K == GAUSSIAN) {
    T v = s * d;
    return s * T(0.3989422804014327) * std::exp(T(-0.5) * v * v);
  }
  if (K == RECIPROCAL) {
    T q = T(2) + std::fabs(s * d);
    return s / (q * q);
  }
  if (K == CAUCHY) {
    T v = s * d;
    return s / (T(3.141592653589793) * (T(1) + v * v));
  }
  T v = std::fabs(s * d) + T(1e-10);
  return std::fabs(s * d) <= T(0.25) ? s : s / (T(16) * v * v);
}

enum Mode { FORWARD = 0, BACKWARD = 1, GROCO = 2, T_FORWARD = 3, T_BACKWARD = 4 };

// Everything one thread needs for one block of R rows.
template <typename T, int R>
struct Scratch {
  std::vector<T> x, w, g, gx, alpha, d, dw;
  Scratch(const Net& net, int64_t m, bool backward)
      : x(net.n * R), w(net.n * m * R), g(backward ? net.n * m * R : 0), gx(backward ? net.n * R : 0),
        alpha(net.comparators * R), d(net.comparators * R),
        dw(backward ? net.comparators * m * R : 0) {}
};

// Arguments of one call, shared by all blocks.
template <typename T>
struct Call {
  const T* x;          // (B, n)
  const T* v;          // (n, m) or (B, n, m); unused in GROCO mode
  bool v_batched;
  int64_t m, rows;
  T s, lam;
  const T* grad_out;   // BACKWARD, T_BACKWARD: (B, n, m)
  T* out;              // FORWARD, T_FORWARD: (B, n, m); GROCO: (B,) loss per row
  T* grad_x;           // BACKWARD / T_BACKWARD / GROCO: (B, n)
  T* grad_v;           // BACKWARD / T_BACKWARD: (B, n, m) per-row gradient of v, or null
  int64_t num_neg;     // GROCO: inputs [0, K) are negatives, [K, n) positives
};

// Load a block's rows of x, transposed to [wire][row]; padding rows are zeros, never written back.
template <typename T, int R>
static void load_x(const Net& net, const Call<T>& c, int64_t row0, int64_t valid, T* x) {
  const int64_t n = net.n;
  for (int64_t i = 0; i < n; ++i)
    for (int r = 0; r < R; ++r) x[i * R + r] = r < valid ? c.x[(row0 + r) * n + i] : T(0);
}

// Load v for a block's rows, transposed to [wire][column][row]; padding rows copy a real row.
template <typename T, int R>
static void load_v(const Net& net, const Call<T>& c, int64_t row0, int64_t valid, T* w) {
  const int64_t n = net.n, m = c.m;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      for (int r = 0; r < R; ++r) {
        const T* vsrc = c.v_batched ? c.v + (r < valid ? row0 + r : row0) * n * m : c.v;
        w[(i * m + j) * R + r] = vsrc[i * m + j];
      }
}

// The value sweep, first layer to last: each comparator's alpha and d = x_b - x_a, kept
// per comparator ([cmp][row]) for the product sweeps and the backward.
template <typename T, int R, int K>
static void value_sweep(const Net& net, T* x, T* alpha, T* dd, T s, T lam) {
  for (int64_t cmp = 0; cmp < net.comparators; ++cmp) {
    T* A = x + net.a[cmp] * R;
    T* B = x + net.b[cmp] * R;
    T* LO = x + net.lo[cmp] * R;
    T* HI = x + net.hi[cmp] * R;
    T* al = alpha + cmp * R;
    T* dc = dd + cmp * R;
    T lo_v[R], hi_v[R];
#pragma omp simd
    for (int r = 0; r < R; ++r) {
      T a = A[r], b = B[r];
      T d = b - a;
      T p = relax<T, K>(d, s, lam);
      al[r] = p;
      dc[r] = d;
      lo_v[r] = b + p * (a - b);
      hi_v[r] = a + p * (b - a);
    }
    for (int r = 0; r < R; ++r) {
      LO[r] = lo_v[r];
      HI[r] = hi_v[r];
    }
  }
}

// Back through one comparator of the value sweep: the gradient of the values gx at its
// wires, given dL/dalpha of its rows (galpha) from the product sweep.
template <typename T, int R, int K>
static void comparator_value_backward(const Net& net, int64_t cmp, T* gx, const T* al, const T* dc,
                                      const T* galpha, T s, T lam) {
  T* XA = gx + net.a[cmp] * R;
  T* XB = gx + net.b[cmp] * R;
  T* XLO = gx + net.lo[cmp] * R;
  T* XHI = gx + net.hi[cmp] * R;
  T na[R], nb[R];
#pragma omp simd
  for (int r = 0; r < R; ++r) {
    T gmin = XLO[r], gmax = XHI[r], p = al[r], d = dc[r];
    T ga = galpha[r] - (gmin - gmax) * d;
    T gd = ga * relax_derivative<T, K>(d, p, s, lam);
    na[r] = gmax + p * (gmin - gmax) - gd;
    nb[r] = gmin + p * (gmax - gmin) + gd;
  }
  for (int r = 0; r < R; ++r) {
    XA[r] = na[r];
    XB[r] = nb[r];
  }
}

// T_FORWARD: out = P^T @ v; T_BACKWARD: grad_x and grad_v of it from grad_out.
template <typename T, int R, int K>
static void run_block_transposed(const Net& net, const Call<T>& c, int64_t row0, int mode, Scratch<T, R>& sc) {
  const int64_t n = net.n, m = c.m;
  const int64_t valid = std::min<int64_t>(R, c.rows - row0);
  const bool backward = mode == T_BACKWARD;
  T* x = sc.x.data();
  T* w = sc.w.data();
  T* alpha = sc.alpha.data();
  T* dd = sc.d.data();
  T* dw = sc.dw.data();  // T_BACKWARD: w_a - w_b entering every comparator, [cmp][column][row]
  const T s = c.s, lam = c.lam;
  load_x<T, R>(net, c, row0, valid, x);
  load_v<T, R>(net, c, row0, valid, w);

  // 1. The values, then w mixed as the values were, first layer to last.
  value_sweep<T, R, K>(net, x, alpha, dd, s, lam);
  for (int64_t cmp = 0; cmp < net.comparators; ++cmp) {
    const T* al = alpha + cmp * R;
    for (int64_t j = 0; j < m; ++j) {
      T* WA = w + (net.a[cmp] * m + j) * R;
      T* WB = w + (net.b[cmp] * m + j) * R;
      T* WLO = w + (net.lo[cmp] * m + j) * R;
      T* WHI = w + (net.hi[cmp] * m + j) * R;
      T* dwc = backward ? dw + (cmp * m + j) * R : nullptr;
      T nl[R], nh[R];
#pragma omp simd
      for (int r = 0; r < R; ++r) {
        T a = WA[r], b = WB[r], p = al[r];
        nl[r] = b + p * (a - b);
        nh[r] = a + p * (b - a);
      }
      if (dwc)
        for (int r = 0; r < R; ++r) dwc[r] = WA[r] - WB[r];
      for (int r = 0; r < R; ++r) {
        WLO[r] = nl[r];
        WHI[r] = nh[r];
      }
    }
  }

  if (!backward) {
    for (int r = 0; r < valid; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) c.out[((row0 + r) * n + i) * m + j] = w[(i * m + j) * R + r];
    return;
  }

  // 2. Last layer to first: g back through the mixing of w, dL/dalpha, and the values.
  T* g = sc.g.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      for (int r = 0; r < R; ++r)
        g[(i * m + j) * R + r] = r < valid ? c.grad_out[((row0 + r) * n + i) * m + j] : T(0);
  T* gx = sc.gx.data();
  for (int64_t i = 0; i < n * R; ++i) gx[i] = T(0);
  for (int64_t cmp = net.comparators - 1; cmp >= 0; --cmp) {
    const T* al = alpha + cmp * R;
    const T* dc = dd + cmp * R;
    T galpha[R];
    for (int r = 0; r < R; ++r) galpha[r] = T(0);
    for (int64_t j = 0; j < m; ++j) {
      T* GA = g + (net.a[cmp] * m + j) * R;
      T* GB = g + (net.b[cmp] * m + j) * R;
      T* GLO = g + (net.lo[cmp] * m + j) * R;
      T* GHI = g + (net.hi[cmp] * m + j) * R;
      const T* dwc = dw + (cmp * m + j) * R;
      T na[R], nb[R];
#pragma omp simd
      for (int r = 0; r < R; ++r) {
        T gl = GLO[r], gh = GHI[r], p = al[r];
        galpha[r] += (gl - gh) * dwc[r];
        na[r] = gh + p * (gl - gh);
        nb[r] = gl + p * (gh - gl);
      }
      for (int r = 0; r < R; ++r) {
        GA[r] = na[r];
        GB[r] = nb[r];
      }
    }
    comparator_value_backward<T, R, K>(net, cmp, gx, al, dc, galpha, s, lam);
  }
  if (c.grad_v)
    for (int r = 0; r < valid; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) c.grad_v[((row0 + r) * n + i) * m + j] = g[(i * m + j) * R + r];
  for (int r = 0; r < valid; ++r)
    for (int64_t i = 0; i < n; ++i) c.grad_x[(row0 + r) * n + i] = gx[i * R + r];
}

template <typename T, int R, int K>
static void run_block(const Net& net, const Call<T>& c, int64_t row0, int mode, Scratch<T, R>& sc) {
  if (mode == T_FORWARD || mode == T_BACKWARD) {
    run_block_transposed<T, R, K>(net, c, row0, mode, sc);
    return;
  }
  const int64_t n = net.n, m = c.m;
  const int64_t valid = std::min<int64_t>(R, c.rows - row0);
  const bool backward = mode != FORWARD;
  T* x = sc.x.data();
  T* w = sc.w.data();
  T* alpha = sc.alpha.data();
  T* dd = sc.d.data();
  T* dw = sc.dw.data();
  const T s = c.s, lam = c.lam;

  // 1. Value sweep: alphas (and d for the backward).
  load_x<T, R>(net, c, row0, valid, x);
  value_sweep<T, R, K>(net, x, alpha, dd, s, lam);

  // 2. Product sweep, last layer to first; w layout [wire][column][row].
  if (mode == GROCO) {
    for (int64_t i = 0; i < n; ++i)
      for (int r = 0; r < R; ++r) w[i * R + r] = i >= c.num_neg ? T(1) : T(0);
  } else {
    load_v<T, R>(net, c, row0, valid, w);
  }
  for (int64_t cmp = net.comparators - 1; cmp >= 0; --cmp) {
    const T* al = alpha + cmp * R;
    for (int64_t j = 0; j < m; ++j) {
      T* WA = w + (net.a[cmp] * m + j) * R;
      T* WB = w + (net.b[cmp] * m + j) * R;
      T* WLO = w + (net.lo[cmp] * m + j) * R;
      T* WHI = w + (net.hi[cmp] * m + j) * R;
      T* dwc = backward ? dw + (cmp * m + j) * R : nullptr;
      T na[R], nb[R];
#pragma omp simd
      for (int r = 0; r < R; ++r) {
        T wl = WLO[r], wh = WHI[r], p = al[r];
        na[r] = wh + p * (wl - wh);
        nb[r] = wl + p * (wh - wl);
      }
      if (dwc)
        for (int r = 0; r < R; ++r) dwc[r] = WLO[r] - WHI[r];
      for (int r = 0; r < R; ++r) {
        WA[r] = na[r];
        WB[r] = nb[r];
      }
    }
  }

  if (mode == FORWARD) {
    for (int r = 0; r < valid; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) c.out[((row0 + r) * n + i) * m + j] = w[(i * m + j) * R + r];
    return;
  }

  // 3. Gradient of P @ v: given (BACKWARD) or the GroCo loss's (GROCO).
  T* g = sc.g.data();
  if (mode == GROCO) {
    // Mean over the n inputs of BCE(clamp(q, 0, 1), target), target 1 for positives,
    // as torch's binary_cross_entropy computes it (log clamped at -100, gradient
    // (q - t) / max(q (1 - q), 1e-12)), and zero gradient where the clamp cuts.
    T loss[R];
    for (int r = 0; r < R; ++r) loss[r] = T(0);
    const T inv_n = T(1) / T(n);
    for (int64_t i = 0; i < n; ++i) {
      const bool positive = i >= c.num_neg;
      for (int r = 0; r < R; ++r) {
        T raw = w[i * R + r];
        T q = raw < T(0) ? T(0) : (raw > T(1) ? T(1) : raw);
        T log_term = positive ? std::log(q) : std::log(T(1) - q);
        if (log_term < T(-100)) log_term = T(-100);
        loss[r] -= log_term;
        T t = positive ? T(1) : T(0);
        T denom = q * (T(1) - q);
        if (denom < T(1e-12)) denom = T(1e-12);
        T gq = (raw >= T(0) && raw <= T(1)) ? (q - t) / denom : T(0);
        g[i * R + r] = gq * inv_n;
      }
    }
    for (int r = 0; r < valid; ++r) c.out[row0 + r] = loss[r] * inv_n;
  } else {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j)
        for (int r = 0; r < R; ++r)
          g[(i * m + j) * R + r] = r < valid ? c.grad_out[((row0 + r) * n + i) * m + j] : T(0);
  }

  // 4. First layer to last through w_{t-1} = M_t w_t: dL/dalpha (kept in dw's first
  //    column) and g = M_t^T g.
  for (int64_t cmp = 0; cmp < net.comparators; ++cmp) {
    const T* al = alpha + cmp * R;
    T ga[R];
    for (int r = 0; r < R; ++r) ga[r] = T(0);
    for (int64_t j = 0; j < m; ++j) {
      T* GA = g + (net.a[cmp] * m + j) * R;
      T* GB = g + (net.b[cmp] * m + j) * R;
      T* GLO = g + (net.lo[cmp] * m + j) * R;
      T* GHI = g + (net.hi[cmp] * m + j) * R;
      const T* dwc = dw + (cmp * m + j) * R;
      T nl[R], nh[R];
#pragma omp simd
      for (int r = 0; r < R; ++r) {
        T a = GA[r], b = GB[r], p = al[r];
        ga[r] += (a - b) * dwc[r];
        nl[r] = b + p * (a - b);
        nh[r] = a + p * (b - a);
      }
      for (int r = 0; r < R; ++r) {
        GLO[r] = nl[r];
        GHI[r] = nh[r];
      }
    }
    T* store = dw + cmp * m * R;
    for (int r = 0; r < R; ++r) store[r] = ga[r];
  }
  if (mode == BACKWARD && c.grad_v)
    for (int r = 0; r < valid; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) c.grad_v[((row0 + r) * n + i) * m + j] = g[(i * m + j) * R + r];

  // 5. Back through the value sweep, last layer to first.
  T* gx = sc.gx.data();
  for (int64_t i = 0; i < n * R; ++i) gx[i] = T(0);
  for (int64_t cmp = net.comparators - 1; cmp >= 0; --cmp) {
    const T* al = alpha + cmp * R;
    const T* dc = dd + cmp * R;
    comparator_value_backward<T, R, K>(net, cmp, gx, al, dc, dw + cmp * m * R, s, lam);
  }
  for (int r = 0; r < valid; ++r)
    for (int64_t i = 0; i < n; ++i) c.grad_x[(row0 + r) * n + i] = gx[i * R + r];
}

static inline bool needs_gradient(int mode) { return mode != FORWARD && mode != T_FORWARD; }

// Blocks handed out to the caller and its helpers; shared so that a helper that starts
// after the call returned finds no block left and exits without touching the call.
struct Progress {
  explicit Progress(int64_t total) : blocks(total) {}
  const int64_t blocks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
};

template <typename T, int R, int K>
static void take_blocks(const Net& net, const Call<T>& c, int mode, Progress& progress, Scratch<T, R>& sc) {
  FlushSubnormals flush;
  for (;;) {
    const int64_t blk = progress.next.fetch_add(1);
    if (blk >= progress.blocks) return;
    run_block<T, R, K>(net, c, blk * R, mode, sc);
    if (progress.done.fetch_add(1) + 1 == progress.blocks) {
      std::lock_guard<std::mutex> guard(progress.mutex);
      progress.finished.notify_all();
    }
  }
}

// A helper owns copies of the call's descriptors (pointers are only followed for a
// claimed block, i.e. while the caller waits) and shares the progress counters.
template <typename T, int R, int K>
static void helper(Net net, Call<T> c, int mode, std::shared_ptr<Progress> progress) {
  std::unique_ptr<Scratch<T, R>> sc;
  try {
    sc.reset(new Scratch<T, R>(net, c.m, needs_gradient(mode)));
  } catch (...) {  // out of memory: claim nothing, the caller does the rest
    return;
  }
  take_blocks<T, R, K>(net, c, mode, *progress, *sc);
}

template <typename T, int R, int K>
static void run_all(const Net& net, const Call<T>& c, int mode, int threads) {
  const int64_t blocks = (c.rows + R - 1) / R;
  if (blocks == 0) return;
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, blocks)));
  Scratch<T, R> sc(net, c.m, needs_gradient(mode));  // may throw: before any helper exists
  auto progress = std::make_shared<Progress>(blocks);
  for (int t = 1; t < threads; ++t) {
    try {
      std::thread(helper<T, R, K>, net, c, mode, progress).detach();
    } catch (...) {  // no thread available: the caller does the rest
      break;
    }
  }
  take_blocks<T, R, K>(net, c, mode, *progress, sc);
  std::unique_lock<std::mutex> lock(progress->mutex);
  progress->finished.wait(lock, [&] { return progress->done.load() == blocks; });
}

template <typename T, int R>
static int dispatch(const Net& net, const Call<T>& c, int kind, int mode, int threads) {
  switch (kind) {
    case LOGISTIC: run_all<T, R, LOGISTIC>(net, c, mode, threads); return 0;
    case LOGISTIC_PHI: run_all<T, R, LOGISTIC_PHI>(net, c, mode, threads); return 0;
    case GAUSSIAN: run_all<T, R, GAUSSIAN>(net, c, mode, threads); return 0;
    case RECIPROCAL: run_all<T, R, RECIPROCAL>(net, c, mode, threads); return 0;
    case CAUCHY: run_all<T, R, CAUCHY>(net, c, mode, threads); return 0;
    case OPTIMAL: run_all<T, R, OPTIMAL>(net, c, mode, threads); return 0;
  }
  return 1;
}

template <typename T, int R>
static int entry(int64_t n, int64_t layers, int64_t comparators, const int32_t* ptr, const int32_t* a,
                 const int32_t* b, const int32_t* lo, const int32_t* hi, int kind, double s, double lam,
                 int mode, int threads, const void* x, const void* v, int v_batched, int64_t m,
                 int64_t rows, const void* grad_out, void* out, void* grad_x, void* grad_v, int64_t num_neg) {
  Net net{n, layers, comparators, ptr, a, b, lo, hi};
  Call<T> c{static_cast<const T*>(x), static_cast<const T*>(v), v_batched != 0, mode == GROCO ? 1 : m, rows,
            static_cast<T>(s), static_cast<T>(lam), static_cast<const T*>(grad_out), static_cast<T*>(out),
            static_cast<T*>(grad_x), static_cast<T*>(grad_v), num_neg};
  try {
    return dispatch<T, R>(net, c, kind, mode, threads);
  } catch (...) {  // out of memory for the scratch: no exception crosses the C ABI
    return 2;
  }
}

}  // namespace

extern "C" {

int rankssl_abi_version() { return 3; }

// mode 0: out = P @ v; mode 1: grad_x (and grad_v per row if non-null) from grad_out;
// mode 2: GroCo, out = per-row loss and grad_x = its gradient; modes 3 and 4: as 0 and 1
// for P^T @ v. Returns 0 on success.
int rankssl_network_f32(int64_t n, int64_t layers, int64_t comparators, const int32_t* ptr, const int32_t* a,
                        const int32_t* b, const int32_t* lo, const int32_t* hi, int kind, double s, double lam,
                        int mode, int threads, const void* x, const void* v, int v_batched, int64_t m,
                        int64_t rows, const void* grad_out, void* out, void* grad_x, void* grad_v,
                        int64_t num_neg) {
  return entry<float, 32>(n, layers, comparators, ptr, a, b, lo, hi, kind, s, lam, mode, threads, x, v, v_batched,
                          m, rows, grad_out, out, grad_x, grad_v, num_neg);
}

int rankssl_network_f64(int64_t n, int64_t layers, int64_t comparators, const int32_t* ptr, const int32_t* a,
                        const int32_t* b, const int32_t* lo, const int32_t* hi, int kind, double s, double lam,
                        int mode, int threads, const void* x, const void* v, int v_batched, int64_t m,
                        int64_t rows, const void* grad_out, void* out, void* grad_x, void* grad_v,
                        int64_t num_neg) {
  return entry<double, 16>(n, layers, comparators, ptr, a, b, lo, hi, kind, s, lam, mode, threads, x, v, v_batched,
                          m, rows, grad_out, out, grad_x, grad_v, num_neg);
}
}
