// elbo-audit-native: compiled CPU kernels of the pairwise pass.
//
// Plain extern "C" functions, loaded with ctypes (no Python C API). Every
// quantity is kept in log2 units: for component m and dimension d the caller
// passes a_md = sqrt(log2(e) / 2) / sigma_md, b_md = -mu_md a_md and a constant
// c_m (log w_m plus the normaliser, times log2(e), minus a common offset), all
// stored dimension-major (D x Mpad, Mpad a multiple of the block width) and
// padded with components of constant -inf. Then
//
//     log2 [w_m N(z; mu_m, sigma_m)] - offset = c_m - sum_d fma(z_d, a_md, b_md)^2.
//
// Values are computed for a panel of P samples against U vectors of W
// components at a time (accumulators in registers), over tiles of TM components
// that stay in L1/L2, into a small buffer; a streaming (running-max)
// logsumexp then exponentiates the buffer with a vectorised exp2.
//
// Determinism: every sample (log_density, log_marginals) or every component
// (interaction) is computed by one thread with a sequence of operations that
// does not depend on the number of threads, so results are bitwise identical
// for any thread count.
//
// Build: C++17, -O3, -ffp-contract=fast (fused multiply-adds), -march=native
// where available. Never -ffast-math: the code relies on IEEE inf handling and
// on the rounding trick of exp2.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#ifndef EAN_VBYTES
#if defined(__AVX512F__)
#define EAN_VBYTES 64
#else
#define EAN_VBYTES 32
#endif
#endif

#ifndef EAN_TILE_BYTES
#define EAN_TILE_BYTES 32768
#endif

#define EAN_INLINE inline __attribute__((always_inline))
#define EAN_STR2(x) #x
#define EAN_STR(x) EAN_STR2(x)

namespace {

using i64 = std::int64_t;

constexpr int kAbiVersion = 1;
constexpr double kLn2 = 0.693147180559945309417232121458176568;

template <class T>
struct VT;

template <>
struct VT<float> {
  typedef float v __attribute__((vector_size(EAN_VBYTES)));
  typedef std::int32_t vi __attribute__((vector_size(EAN_VBYTES)));
  typedef std::uint32_t vu __attribute__((vector_size(EAN_VBYTES)));
  static constexpr int W = EAN_VBYTES / 4;
  // log2 units below the running maximum at which terms are dropped: with at
  // most 2^40 components they add < 2^-24 relative, far below float32 rounding.
  static constexpr float kCut = 64.0f;
};

template <>
struct VT<double> {
  typedef double v __attribute__((vector_size(EAN_VBYTES)));
  typedef std::int64_t vi __attribute__((vector_size(EAN_VBYTES)));
  typedef std::uint64_t vu __attribute__((vector_size(EAN_VBYTES)));
  static constexpr int W = EAN_VBYTES / 8;
  // 2^-110 per term: < 1e-20 relative even for 10^12 components.
  static constexpr double kCut = 110.0;
};

// Register blocking: a panel of P draws against U vectors of W components,
// P * U accumulators in registers. Many dimensions: P = 12, U = 1 (a and b of
// one vector stay in registers, a broadcast per draw); few dimensions (the
// store and maximum per block dominate): P = 4, U = 2. The choice depends on
// D only, and does not change any result: every pair is the same sequence of
// operations whatever the blocking.
template <int P_, int U_>
struct Blk {
  static constexpr int P = P_;
  static constexpr int U = U_;
};
#ifndef EAN_WIDE_P
#define EAN_WIDE_P 12
#endif
using BlkFew = Blk<4, 2>;
using BlkMany = Blk<EAN_WIDE_P, 1>;
#ifndef EAN_MANY_DIMS
#define EAN_MANY_DIMS 6
#endif

template <class F>
EAN_INLINE int with_blocking(long long dims, F&& f) {
  if (dims >= EAN_MANY_DIMS) return f(BlkMany{});
  return f(BlkFew{});
}

// Components are padded to a multiple of this (and tiles are multiples of it):
// whole register blocks of both blockings, and pairs of vectors for the
// exponentiation loop.
template <class T>
constexpr int pad_width() {
  return VT<T>::W * 2;
}
static_assert(2 % BlkFew::U == 0 && 2 % BlkMany::U == 0, "blocks must divide the padding");

template <class V, class T>
EAN_INLINE V loadv(const T* p) {
  V r;
  std::memcpy(&r, p, sizeof(V));
  return r;
}

template <class V, class T>
EAN_INLINE void storev(T* p, V x) {
  std::memcpy(p, &x, sizeof(V));
}

// A broadcast (one vbroadcast from memory where the intrinsics are known).
template <class V, class S>
EAN_INLINE V splat(S x) {
  static_assert(std::is_same<V, typename VT<S>::v>::value, "vector of S");
#if defined(__AVX512F__) && EAN_VBYTES == 64
  if constexpr (std::is_same<S, float>::value) return (V)_mm512_set1_ps(x);
  else return (V)_mm512_set1_pd(x);
#elif defined(__AVX__) && EAN_VBYTES == 32
  if constexpr (std::is_same<S, float>::value) return (V)_mm256_set1_ps(x);
  else return (V)_mm256_set1_pd(x);
#else
  V r = V{};
  r[0] = x;
  return __builtin_shuffle(r, typename VT<S>::vi{});
#endif
}

template <class V>
EAN_INLINE V vmax(V a, V b) {
  return a > b ? a : b;
}

// Whether any lane of a comparison mask is set.
template <class VI>
EAN_INLINE bool any(VI m) {
#if defined(__AVX__) && EAN_VBYTES == 32
  return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#else
  constexpr int n = sizeof(VI) / 8;
  std::uint64_t w[n];
  std::memcpy(w, &m, sizeof(VI));
  std::uint64_t o = 0;
  for (int i = 0; i < n; ++i) o |= w[i];
  return o != 0;
#endif
}

// 2^x for x in (-126, 0]: x = n + f, |f| <= 1/2 (n by the 1.5 * 2^23 rounding
// trick), 2^f by a near-minimax polynomial of degree 6 (relative error 2e-8
// with its float32 coefficients; about 1e-7 after float32 evaluation), n added
// to the exponent bits. Outside that range the lanes are garbage (never
// denormal), which every caller masks to 0: it drops terms below 2^-kCut.
EAN_INLINE VT<float>::v exp2v(VT<float>::v x) {
  typedef VT<float>::v v;
  typedef VT<float>::vu vu;
  const v magic = splat<v>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const v t = x + magic;
  const v f = x - (t - magic);
  v p = splat<v>(1.5461444854736328e-04f);
  p = p * f + 1.3400427997112274e-03f;
  p = p * f + 9.6180569380521774e-03f;
  p = p * f + 5.5503271520137787e-02f;
  p = p * f + 2.4022650718688965e-01f;
  p = p * f + 6.9314718246459961e-01f;
  p = p * f + 1.0f;
  // unsigned: lanes the caller masks out may wrap around (defined behaviour)
  const vu n = (vu)t - (vu)magic;
  return (v)((vu)p + (n << 23));
}

// 2^x for x in (-1022, 0]: the same with a polynomial of degree 11 (relative
// error 2e-17 with its float64 coefficients, ~2e-16 after evaluation).
EAN_INLINE VT<double>::v exp2v(VT<double>::v x) {
  typedef VT<double>::v v;
  typedef VT<double>::vu vu;
  const v magic = splat<v>(6755399441055744.0);  // 1.5 * 2^52
  const v t = x + magic;
  const v f = x - (t - magic);
  v p = splat<v>(4.4558179083360645e-10);
  p = p * f + 7.074194297288521e-09;
  p = p * f + 1.0178057087733941e-07;
  p = p * f + 1.3215432535912375e-06;
  p = p * f + 1.5252733841556773e-05;
  p = p * f + 0.00015403530463724353;
  p = p * f + 0.001333355814640647;
  p = p * f + 0.009618129107587256;
  p = p * f + 0.055504108664821625;
  p = p * f + 0.24022650695910158;
  p = p * f + 0.6931471805599453;
  p = p * f + 1.0;
  // unsigned: lanes the caller masks out may wrap around (defined behaviour)
  const vu n = (vu)t - (vu)magic;
  return (v)((vu)p + (n << 52));
}

// Float64 accumulation of vectors of T: two vectors of W/2 doubles for float.
template <class T>
struct DAcc {
  typedef double h __attribute__((vector_size(EAN_VBYTES)));
  typedef float fh __attribute__((vector_size(EAN_VBYTES / 2)));
  h lo = h{}, hi = h{};
  EAN_INLINE void add(typename VT<T>::v x) {
    if constexpr (std::is_same<T, float>::value) {
      fh a, b;
      std::memcpy(&a, &x, sizeof(fh));
      std::memcpy(&b, reinterpret_cast<const char*>(&x) + sizeof(fh), sizeof(fh));
      lo += __builtin_convertvector(a, h);
      hi += __builtin_convertvector(b, h);
    } else {
      lo += x;
    }
  }
  EAN_INLINE double sum() const {
    double s = 0.0;
    for (int i = 0; i < int(sizeof(h) / sizeof(double)); ++i) s += lo[i];
    for (int i = 0; i < int(sizeof(h) / sizeof(double)); ++i) s += hi[i];
    return s;
  }
  // lanes [0, W): column sums of a vector block
  static EAN_INLINE void add_to(double* col, typename VT<T>::v x) {
    h c0, c1;
    if constexpr (std::is_same<T, float>::value) {
      fh a, b;
      std::memcpy(&a, &x, sizeof(fh));
      std::memcpy(&b, reinterpret_cast<const char*>(&x) + sizeof(fh), sizeof(fh));
      std::memcpy(&c0, col, sizeof(h));
      std::memcpy(&c1, col + sizeof(h) / sizeof(double), sizeof(h));
      c0 += __builtin_convertvector(a, h);
      c1 += __builtin_convertvector(b, h);
      std::memcpy(col, &c0, sizeof(h));
      std::memcpy(col + sizeof(h) / sizeof(double), &c1, sizeof(h));
    } else {
      std::memcpy(&c0, col, sizeof(h));
      c0 += x;
      std::memcpy(col, &c0, sizeof(h));
    }
  }
};

template <class V>
EAN_INLINE auto hmax(V x) -> typename std::remove_reference<decltype(x[0])>::type {
  auto m = x[0];
  for (int i = 1; i < int(sizeof(V) / sizeof(m)); ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Components per tile: a and b of a tile take at most EAN_TILE_BYTES (L1) and
// the P rows of values at most half as much. A function of D and T only.
template <class T, class B>
int tile_size(i64 dims) {
  constexpr int pw = pad_width<T>();
  const i64 per = 2 * dims * i64(sizeof(T));
  i64 tm = std::min<i64>(EAN_TILE_BYTES / std::max<i64>(per, 1),
                         EAN_TILE_BYTES / 2 / (B::P * i64(sizeof(T))));
  tm = std::clamp<i64>(tm, 4 * pw, 2048);
  return int(tm / pw * pw);
}

// Panel layout of draws: for panel i, dimension d, lane p: zp[(i * D + d) * P + p].
template <class T, int kP>
void fill_panels(const double* z, i64 ldz, i64 dims, i64 s0, i64 ns, T* zp) {
  const i64 npan = (ns + kP - 1) / kP;
  for (i64 i = 0; i < npan; ++i) {
    for (i64 d = 0; d < dims; ++d) {
      for (int p = 0; p < kP; ++p) {
        const i64 s = i * kP + p;
        zp[(i * dims + d) * kP + p] = s < ns ? T(z[(s0 + s) * ldz + d]) : T(0);
      }
    }
  }
}

// Values c_m - sum_d (z_d a_md + b_md)^2 of one panel against components
// [0, n) of a tile (n a multiple of the block width) into buf[p * ldb + m];
// mx[p] receives the lane-wise maxima of row p.
template <class T, class B>
EAN_INLINE void panel_values(const T* zp, i64 dims, const T* a, const T* b, const T* c, i64 lda,
                             int n, T* buf, int ldb, typename VT<T>::v* mx) {
  typedef typename VT<T>::v v;
  constexpr int W = VT<T>::W;
  constexpr int kP = B::P;
  constexpr int kU = B::U;
  constexpr int BW = W * kU;
  for (int p = 0; p < kP; ++p) mx[p] = splat<v>(-std::numeric_limits<T>::infinity());
  for (int k = 0; k < n; k += BW) {
    v acc[kP][kU];
    for (int p = 0; p < kP; ++p)
      for (int u = 0; u < kU; ++u) acc[p][u] = v{};
    const T* ad = a + k;
    const T* bd = b + k;
    const T* zd = zp;
    for (i64 d = 0; d < dims; ++d, ad += lda, bd += lda, zd += kP) {
      v av[kU], bv[kU];
      for (int u = 0; u < kU; ++u) {
        av[u] = loadv<v>(ad + u * W);
        bv[u] = loadv<v>(bd + u * W);
      }
      for (int p = 0; p < kP; ++p) {
        const v zs = splat<v>(zd[p]);
        for (int u = 0; u < kU; ++u) {
          const v t = zs * av[u] + bv[u];
          acc[p][u] += t * t;
        }
      }
    }
    for (int u = 0; u < kU; ++u) {
      const v cv = loadv<v>(c + k + u * W);
      for (int p = 0; p < kP; ++p) {
        const v val = cv - acc[p][u];
        storev(buf + p * ldb + k + u * W, val);
        mx[p] = vmax(mx[p], val);
      }
    }
  }
}

// One streaming-logsumexp step of one draw over a tile row of n values with
// maximum hm: (rmax, rsum) represent sum 2^v = rsum * 2^rmax.
template <class T>
EAN_INLINE void lse_update(double& rmax, double& rsum, const T* row, int n, T hm) {
  typedef typename VT<T>::v v;
  typedef typename VT<T>::vi vi;
  constexpr int W = VT<T>::W;
  constexpr T cut = VT<T>::kCut;
  if (double(hm) > rmax) {
    rsum *= std::exp2(rmax - double(hm));  // 0 * 0 while rmax is -inf
    rmax = double(hm);
  }
  if (rmax == -std::numeric_limits<double>::infinity()) return;  // all weights zero so far
  const v mt = splat<v>(T(rmax));  // rmax is a value of type T, exactly
  const v lo = splat<v>(-cut);
  // A row whose maximum is at or below the cut is dropped whole (the common
  // case in many dimensions); otherwise every lane is exponentiated without
  // branches (cheaper than unpredictable per-vector tests), and lanes at or
  // below the cut are masked to 0, whatever exp2v made of them (so nothing is
  // ever denormal). float32 partial sums over 8 vectors, then float64.
  if (double(hm) - rmax <= -double(cut)) return;
  constexpr int G = std::is_same<T, float>::value ? 8 * W : 1 << 30;
  DAcc<T> dacc;
  for (int k0 = 0; k0 < n; k0 += G) {
    const int k1 = std::min(n, k0 + G);
    v f0 = v{}, f1 = v{};
    for (int k = k0; k < k1; k += 2 * W) {
      const v x0 = loadv<v>(row + k) - mt;
      const v x1 = loadv<v>(row + k + W) - mt;
      f0 += (v)((vi)exp2v(x0) & (x0 > lo));
      f1 += (v)((vi)exp2v(x1) & (x1 > lo));
    }
    dacc.add(f0 + f1);
  }
  rsum += dacc.sum();
}

// log-density (nats) of draws [sb, se) into out[s * ldo]; z row s, columns
// [0, dims) at z + s * ldz; components at a, b, c with dimension stride lda.
template <class T, class B>
void density_range(const double* z, i64 ldz, i64 dims, const T* a, const T* b, const T* c, i64 lda,
                   i64 mpad, double offset, i64 sb, i64 se, double* out, i64 ldo) {
  typedef typename VT<T>::v v;
  constexpr int kP = B::P;
  constexpr i64 kChunk = 32 * kP;  // draws per chunk
  const int tm = tile_size<T, B>(dims);
  std::vector<T> zp(size_t(kChunk * std::max<i64>(dims, 1)));
  std::vector<T> buf(size_t(kP) * tm);
  double rmax[kChunk], rsum[kChunk];
  v mx[kP];
  for (i64 s0 = sb; s0 < se; s0 += kChunk) {
    const i64 ns = std::min(kChunk, se - s0);
    const i64 npan = (ns + kP - 1) / kP;
    fill_panels<T, kP>(z, ldz, dims, s0, ns, zp.data());
    std::fill(rmax, rmax + ns, -std::numeric_limits<double>::infinity());
    std::fill(rsum, rsum + ns, 0.0);
    for (i64 m0 = 0; m0 < mpad; m0 += tm) {
      const int n = int(std::min<i64>(tm, mpad - m0));
      for (i64 i = 0; i < npan; ++i) {
        panel_values<T, B>(zp.data() + i * dims * kP, dims, a + m0, b + m0, c + m0, lda, n,
                           buf.data(), tm, mx);
        const int nv = int(std::min<i64>(kP, ns - i * kP));
        for (int p = 0; p < nv; ++p) {
          lse_update<T>(rmax[i * kP + p], rsum[i * kP + p], buf.data() + p * tm, n, hmax(mx[p]));
        }
      }
    }
    for (i64 s = 0; s < ns; ++s) {
      out[(s0 + s) * ldo] = rmax[s] == -std::numeric_limits<double>::infinity()
                                ? -std::numeric_limits<double>::infinity()
                                : (offset + rmax[s] + std::log2(rsum[s])) * kLn2;
    }
  }
}

// Runs f(begin, end) on `threads` contiguous ranges of [0, n) whose bounds are
// multiples of `align`. Returns 0, or 1 if a worker failed.
template <class F>
int parallel(int threads, i64 n, i64 align, i64 min_items, F f) {
  const i64 units = (n + align - 1) / align;
  i64 t = std::max<i64>(1, std::min<i64>({i64(threads), units, std::max<i64>(1, n / min_items)}));
  std::atomic<int> failed{0};
  auto run = [&](i64 k) {
    const i64 b = std::min(n, units * k / t * align);
    const i64 e = std::min(n, units * (k + 1) / t * align);
    try {
      if (b < e) f(b, e);
    } catch (...) {
      failed.store(1);
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(size_t(t - 1));
    for (i64 k = 1; k < t; ++k) pool.emplace_back(run, k);
  } catch (...) {
    // could not start a thread: do its share here (results do not depend on it)
    for (i64 k = i64(pool.size()) + 1; k < t; ++k) run(k);
  }
  run(0);
  for (auto& th : pool) th.join();
  return failed.load();
}

// Pairs per thread below which no thread is started.
constexpr i64 kMinPairsPerThread = 1 << 18;
// Draws per thread range: a multiple of both panel heights.
constexpr i64 kDrawAlign = BlkFew::P * BlkMany::P;

template <class T>
int log_density(const double* z, i64 S, i64 D, const T* a, const T* b, const T* c, i64 mpad,
                double offset, double* out, int threads) {
  const i64 work = std::max<i64>(1, mpad * std::max<i64>(D, 1));
  const i64 min_items = std::max<i64>(kDrawAlign, kMinPairsPerThread / work);
  return with_blocking(D, [&](auto blk) {
    using B = decltype(blk);
    return parallel(threads, S, kDrawAlign, min_items, [&](i64 sb, i64 se) {
      density_range<T, B>(z, D, D, a, b, c, mpad, mpad, offset, sb, se, out, 1);
    });
  });
}

// Per dimension j, the one-dimensional mixture with the constants cm[j].
template <class T>
int log_marginals(const double* z, i64 S, i64 D, const T* a, const T* b, const T* cm, i64 mpad,
                  const double* offsets, double* out, int threads) {
  const i64 work = std::max<i64>(1, mpad * std::max<i64>(D, 1));
  const i64 min_items = std::max<i64>(kDrawAlign, kMinPairsPerThread / work);
  return with_blocking(1, [&](auto blk) {
    using B = decltype(blk);
    return parallel(threads, S, kDrawAlign, min_items, [&](i64 sb, i64 se) {
      for (i64 j = 0; j < D; ++j) {
        density_range<T, B>(z + j, D, 1, a + j * mpad, b + j * mpad, cm + j * mpad, mpad, mpad,
                            offsets[j], sb, se, out + j, D);
      }
    });
  });
}

// r = 2^lr (lr in log2 units) above which -log(1 - r) is computed exactly.
constexpr double kExactLog2 = -12.0;
constexpr double kRCeil = 1.0 - 1e-12;
constexpr double kGFloor = 1.0 - kRCeil;  // 1.0000889e-12, as float64 rounds it

// Column sums R_m of -log(1 - r_m(z_s)) over draws s with owner(s) != m, for
// the components of [mb, me) (a multiple of the padding); every thread sweeps
// all draws for its own components, so no sum crosses threads.
template <class T, class B>
void interaction_range(const T* zp, const double* z, i64 S, i64 D, const i64* owner,
                       const double* q64, const T* qt, const T* a, const T* b, const T* c,
                       const double* a64, const double* b64, const double* c64, i64 mpad,
                       i64 mb, i64 me, double* out) {
  typedef typename VT<T>::v v;
  typedef typename VT<T>::vi vi;
  constexpr int W = VT<T>::W;
  constexpr int kP = B::P;
  constexpr T cut = VT<T>::kCut;
  const i64 npan = (S + kP - 1) / kP;
  const int tm = tile_size<T, B>(D);
  std::vector<T> buf(size_t(kP) * tm);
  std::vector<double> col(static_cast<size_t>(tm));
  v mx[kP];
  const v lo = splat<v>(-cut);
  const v exact_above = splat<v>(T(kExactLog2));
  const T ninf = -std::numeric_limits<T>::infinity();
  for (i64 m0 = mb; m0 < me; m0 += tm) {
    const int n = int(std::min<i64>(tm, me - m0));
    std::fill(col.begin(), col.begin() + n, 0.0);
    for (i64 i = 0; i < npan; ++i) {
      const i64 sp = i * kP;
      const int nv = int(std::min<i64>(kP, S - sp));
      panel_values<T, B>(zp + i * D * kP, D, a + m0, b + m0, c + m0, mpad, n, buf.data(), tm, mx);
      bool live[kP];
      bool any_live = false;
      for (int p = 0; p < kP; ++p) {
        // a row is skipped when every value is at or below the cut (exactly
        // the terms that would be masked), so tiles do not change the result
        live[p] = p < nv && double(hmax(mx[p])) - q64[sp + p] > -double(cut);
        if (!live[p]) continue;
        any_live = true;
        const i64 o = owner[sp + p];
        if (o >= m0 && o < m0 + n) buf[p * tm + (o - m0)] = ninf;  // not its own component
      }
      if (!any_live) continue;
      for (int k = 0; k < n; k += W) {
        v pacc = v{};
        for (int p = 0; p < kP; ++p) {
          if (!live[p]) continue;
          const v x = loadv<v>(buf.data() + p * tm + k) - qt[sp + p];
          vi keep = x > lo;
          if (!any(keep)) continue;
          const vi big = x > exact_above;
          if (any(big)) {
            for (int l = 0; l < W; ++l) {
              if (!big[l]) continue;
              const i64 m = m0 + k + l;
              double val;
              if constexpr (std::is_same<T, double>::value) {
                val = double(buf[p * tm + k + l]);
              } else {
                // recompute the pair in float64
                const double* zs = z + (sp + p) * D;
                double acc = 0.0;
                for (i64 d = 0; d < D; ++d) {
                  const double t = std::fma(zs[d], a64[d * mpad + m], b64[d * mpad + m]);
                  acc = std::fma(t, t, acc);
                }
                val = c64[m] - acc;
              }
              // 1 - r = -expm1(lr) keeps the digits of 1 - r when r is near 1;
              // r is clipped at kRCeil exactly as float64 does it
              const double g = std::max(-std::expm1((val - q64[sp + p]) * kLn2), kGFloor);
              col[k + l] -= std::log(g);
            }
            keep &= ~big;
          }
          const v r = exp2v(x);  // lanes at or below the cut are masked below
          // -log(1 - r) = r + r^2/2 + r^3/3 + r^4/4 + O(r^5), r < 2^-12
          const v ser = r * (T(1) + r * (T(0.5) + r * (T(1) / T(3) + r * T(0.25))));
          pacc += (v)((vi)ser & keep);
        }
        DAcc<T>::add_to(col.data() + k, pacc);
      }
    }
    std::copy(col.begin(), col.begin() + n, out + m0);
  }
}

template <class T>
int interaction(const double* z, i64 S, i64 D, const i64* owner, const double* log_qz, const T* a,
                const T* b, const T* c, const double* a64, const double* b64, const double* c64,
                i64 mpad, double offset, double* out, int threads) {
  constexpr int PW = pad_width<T>();
  // log2 q(z_s) - offset: the threshold of each draw's log-responsibility
  std::vector<double> q64(static_cast<size_t>(S));
  std::vector<T> qt(static_cast<size_t>(S));
  for (i64 s = 0; s < S; ++s) {
    q64[s] = log_qz[s] * (1.0 / kLn2) - offset;
    qt[s] = T(q64[s]);
  }
  const i64 work = std::max<i64>(1, S * std::max<i64>(D, 1));
  const i64 min_items = std::max<i64>(PW, kMinPairsPerThread / work);
  return with_blocking(D, [&](auto blk) {
    using B = decltype(blk);
    constexpr int kP = B::P;
    const i64 npan = (S + kP - 1) / kP;
    std::vector<T> zp(size_t(npan * kP * std::max<i64>(D, 1)));
    fill_panels<T, kP>(z, D, D, 0, S, zp.data());
    return parallel(threads, mpad, PW, min_items, [&](i64 mb, i64 me) {
      interaction_range<T, B>(zp.data(), z, S, D, owner, q64.data(), qt.data(), a, b, c, a64, b64,
                              c64, mpad, mb, me, out);
    });
  });
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int ean_abi_version(void) { return kAbiVersion; }

__attribute__((visibility("default"))) int ean_block_width(int dbl) {
  return dbl ? pad_width<double>() : pad_width<float>();
}

// 1 when this CPU has the instruction sets the library was compiled for.
__attribute__((visibility("default"))) int ean_cpu_ok(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(__AVX512F__)
  if (!__builtin_cpu_supports("avx512f")) return 0;
#endif
#if defined(__AVX2__)
  if (!__builtin_cpu_supports("avx2")) return 0;
#endif
#if defined(__FMA__)
  if (!__builtin_cpu_supports("fma")) return 0;
#endif
#endif
  return 1;
}

__attribute__((visibility("default"))) const char* ean_build_info(void) {
  return "vector bytes " EAN_STR(EAN_VBYTES)
#if defined(__AVX512F__)
         ", avx512f"
#elif defined(__AVX2__)
         ", avx2"
#elif defined(__AVX__)
         ", avx"
#endif
#if defined(__FMA__)
         ", fma"
#endif
      ;
}

// Error codes: 0 ok, 1 failure, 2 out of memory (no exception crosses the C ABI).
#define EAN_TRY(expr)               \
  try {                             \
    return (expr);                  \
  } catch (const std::bad_alloc&) { \
    return 2;                       \
  } catch (...) {                   \
    return 1;                       \
  }

__attribute__((visibility("default"))) int ean_log_density_f32(const double* z, i64 S, i64 D,
                                                                const float* a, const float* b,
                                                                const float* c, i64 mpad,
                                                                double offset, double* out,
                                                                int threads) {
  EAN_TRY(log_density<float>(z, S, D, a, b, c, mpad, offset, out, threads))
}

__attribute__((visibility("default"))) int ean_log_density_f64(const double* z, i64 S, i64 D,
                                                                const double* a, const double* b,
                                                                const double* c, i64 mpad,
                                                                double offset, double* out,
                                                                int threads) {
  EAN_TRY(log_density<double>(z, S, D, a, b, c, mpad, offset, out, threads))
}

__attribute__((visibility("default"))) int ean_log_marginals_f32(
    const double* z, i64 S, i64 D, const float* a, const float* b, const float* cm, i64 mpad,
    const double* offsets, double* out, int threads) {
  EAN_TRY(log_marginals<float>(z, S, D, a, b, cm, mpad, offsets, out, threads))
}

__attribute__((visibility("default"))) int ean_log_marginals_f64(
    const double* z, i64 S, i64 D, const double* a, const double* b, const double* cm, i64 mpad,
    const double* offsets, double* out, int threads) {
  EAN_TRY(log_marginals<double>(z, S, D, a, b, cm, mpad, offsets, out, threads))
}

__attribute__((visibility("default"))) int ean_interaction_f32(
    const double* z, i64 S, i64 D, const i64* owner, const double* log_qz, const float* a,
    const float* b, const float* c, const double* a64, const double* b64, const double* c64,
    i64 mpad, double offset, double* out, int threads) {
  EAN_TRY(interaction<float>(z, S, D, owner, log_qz, a, b, c, a64, b64, c64, mpad, offset, out,
                             threads))
}

__attribute__((visibility("default"))) int ean_interaction_f64(
    const double* z, i64 S, i64 D, const i64* owner, const double* log_qz, const double* a,
    const double* b, const double* c, i64 mpad, double offset, double* out, int threads) {
  EAN_TRY(interaction<double>(z, S, D, owner, log_qz, a, b, c, a, b, c, mpad, offset, out,
                              threads))
}

}  // extern "C"
