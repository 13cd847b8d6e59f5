// GroupNorm (+ per-sample affine, + SiLU) of channels-last activations, forward and backward, for
// CPU. Python side: errprop/nets/kernels.py builds this file; errprop/nets/unet.py calls it.
//
// Layout: x is (B, N, C) contiguous (a channels-last (B, C, H, W) tensor seen as rows of pixels,
// N = H·W); weight and bias are float32 (B, C): the norm's affine times ADM's per-sample scale
// and shift. One sample per task: every pass runs over one sample's N·C values, which stay in L2.
//
// Forward:  mean and variance per group in float32 (two passes: the variance from centred values,
//           so a large mean costs no precision), then y = act((x − μ_c)·a_c + b_c) in one pass,
//           a_c = w_c·rstd.  Nothing but (μ, rstd) per group is saved: the backward re-reads x.
// Backward: one pass for dz = dy·act'(z) (kept in a float32 scratch row) and the channel sums
//           Σ dz, Σ dz·(x − μ); then dx = a_c·dz + u·(x − μ) + v in one pass, with u, v per group.
// bf16 values are widened to float32 on load and rounded to nearest-even once on store; all
// arithmetic is float32. exp is a polynomial the compiler can vectorise (no -ffast-math: NaN
// must propagate, errprop stops on NaN losses).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float load(const float v) { return v; }
inline float load(const at::BFloat16 v) {
  uint16_t h;
  std::memcpy(&h, &v, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void store(float* p, const float f) { *p = f; }
inline void store(at::BFloat16* p, const float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  // Round to nearest even; NaN stays a (quiet) NaN.
  uint16_t h = (f != f) ? uint16_t(0x7FC0) : uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  std::memcpy(p, &h, 2);
}

// e^x to ~2 ulp for x in [-87, 88] (clamped outside: enough for a sigmoid), vectorisable.
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by the 1.5·2²³ trick (vectorises; nearbyint does not).
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline float sigmoid(const float z) { return 1.0f / (1.0f + fast_exp(-z)); }

// Group means of per-channel values v (length C): out[c] = mean of v over c's group.
inline void group_mean(const float* v, float* out, int64_t C, int64_t G) {
  const int64_t cg = C / G;
  for (int64_t g = 0; g < G; ++g) {
    float s = 0.0f;
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) s += v[c];
    for (int64_t c = g * cg; c < (g + 1) * cg; ++c) out[c] = s / cg;
  }
}

template <typename T>
void forward_sample(const T* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, T* __restrict__ y, float* mean_g,
                    float* rstd_g, int64_t N, int64_t C, int64_t G, float eps, bool act) {
  std::vector<float> buf(4 * C, 0.0f);
  float *__restrict__ s = buf.data(), *__restrict__ mu = s + C, *__restrict__ a = mu + C,
                     *__restrict__ q = a + C;
  for (int64_t n = 0; n < N; ++n) {
    const T* row = x + n * C;
    for (int64_t c = 0; c < C; ++c) s[c] += load(row[c]);
  }
  for (int64_t c = 0; c < C; ++c) s[c] /= N;
  group_mean(s, mu, C, G);
  for (int64_t n = 0; n < N; ++n) {
    const T* row = x + n * C;
    for (int64_t c = 0; c < C; ++c) {
      const float d = load(row[c]) - mu[c];
      q[c] += d * d;
    }
  }
  for (int64_t c = 0; c < C; ++c) q[c] /= N;
  group_mean(q, s, C, G);  // s ← group variance per channel
  const int64_t cg = C / G;
  for (int64_t c = 0; c < C; ++c) {
    const float r = 1.0f / std::sqrt(s[c] + eps);
    a[c] = w[c] * r;
    if (c % cg == 0) {
      mean_g[c / cg] = mu[c];
      rstd_g[c / cg] = r;
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    const T* row = x + n * C;
    T* out = y + n * C;
    if (act) {
      for (int64_t c = 0; c < C; ++c) {
        const float z = (load(row[c]) - mu[c]) * a[c] + bias[c];
        store(out + c, z * sigmoid(z));
      }
    } else {
      for (int64_t c = 0; c < C; ++c) store(out + c, (load(row[c]) - mu[c]) * a[c] + bias[c]);
    }
  }
}

template <typename T>
void backward_sample(const T* __restrict__ dy, const T* __restrict__ x,
                     const float* __restrict__ w, const float* __restrict__ bias,
                     const float* mean_g, const float* rstd_g, T* __restrict__ dx, float* dw,
                     float* db,
                     int64_t N, int64_t C, int64_t G, bool act) {
  const int64_t cg = C / G;
  std::vector<float> buf(5 * C, 0.0f), dz(N * C);
  float *__restrict__ mu = buf.data(), *__restrict__ r = mu + C, *__restrict__ a = r + C,
                     *__restrict__ sdz = a + C, *__restrict__ sdzc = sdz + C;
  for (int64_t c = 0; c < C; ++c) {
    mu[c] = mean_g[c / cg];
    r[c] = rstd_g[c / cg];
    a[c] = w[c] * r[c];
  }
  for (int64_t n = 0; n < N; ++n) {
    const T *row = x + n * C, *grow = dy + n * C;
    float* __restrict__ dzrow = dz.data() + n * C;
    for (int64_t c = 0; c < C; ++c) {
      const float xc = load(row[c]) - mu[c];
      float d = load(grow[c]);
      if (act) {
        const float z = xc * a[c] + bias[c];
        const float s = sigmoid(z);
        d *= s * (1.0f + z * (1.0f - s));
      }
      dzrow[c] = d;
      sdz[c] += d;
      sdzc[c] += d * xc;
    }
  }
  // d bias = Σ dz, d weight = Σ dz·x̂ = r·Σ dz·(x − μ);
  // dx = r·w·dz − r·⟨w dz⟩_G − x̂·r·⟨w dz x̂⟩_G (⟨·⟩_G: mean over the group's channels and pixels).
  std::vector<float> m(2 * C), u(C), v(C);
  for (int64_t c = 0; c < C; ++c) {
    db[c] = sdz[c];
    dw[c] = sdzc[c] * r[c];
    m[c] = w[c] * sdz[c] / N;
    m[C + c] = w[c] * dw[c] / N;
  }
  group_mean(m.data(), m.data(), C, G);
  group_mean(m.data() + C, m.data() + C, C, G);
  for (int64_t c = 0; c < C; ++c) {
    u[c] = -r[c] * r[c] * m[C + c];
    v[c] = -r[c] * m[c];
  }
  for (int64_t n = 0; n < N; ++n) {
    const T* row = x + n * C;
    const float* __restrict__ dzrow = dz.data() + n * C;
    T* out = dx + n * C;
    for (int64_t c = 0; c < C; ++c)
      store(out + c, a[c] * dzrow[c] + u[c] * (load(row[c]) - mu[c]) + v[c]);
  }
}

void check(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int64_t G) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous(),
              "group_norm_cpu: x must be a contiguous CPU (B, N, C) tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "group_norm_cpu: x must be float32 or bfloat16");
  TORCH_CHECK(G > 0 && x.size(2) % G == 0, "group_norm_cpu: groups must divide channels");
  for (const auto* t : {&w, &b})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->dim() == 2 &&
                    t->size(0) == x.size(0) && t->size(1) == x.size(2),
                "group_norm_cpu: weight and bias must be contiguous float32 (B, C)");
}

// Calls f(float{}) or f(at::BFloat16{}) by dtype (check() has ruled out the rest).
template <typename F>
void dispatch(at::ScalarType t, F&& f) {
  if (t == at::kBFloat16)
    f(at::BFloat16{});
  else
    f(float{});
}

}  // namespace

std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, int64_t G,
                                   double eps, bool act) {
  check(x, w, b, G);
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  auto y = torch::empty_like(x);
  auto opts = x.options().dtype(at::kFloat);
  auto mean = torch::empty({B, G}, opts), rstd = torch::empty({B, G}, opts);
  dispatch(x.scalar_type(), [&](auto zero) {
    using scalar_t = decltype(zero);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        forward_sample(xp + i * N * C, w.data_ptr<float>() + i * C, b.data_ptr<float>() + i * C,
                       yp + i * N * C, mean.data_ptr<float>() + i * G,
                       rstd.data_ptr<float>() + i * G, N, C, G, static_cast<float>(eps), act);
    });
  });
  return {y, mean, rstd};
}

std::vector<torch::Tensor> backward(torch::Tensor dy, torch::Tensor x, torch::Tensor w,
                                    torch::Tensor b, torch::Tensor mean, torch::Tensor rstd,
                                    int64_t G, bool act) {
  check(x, w, b, G);
  dy = dy.contiguous().to(x.scalar_type());
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  auto dx = torch::empty_like(x);
  auto dw = torch::empty({B, C}, w.options()), db = torch::empty({B, C}, w.options());
  dispatch(x.scalar_type(), [&](auto zero) {
    using scalar_t = decltype(zero);
    const scalar_t *xp = x.data_ptr<scalar_t>(), *gp = dy.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        backward_sample(gp + i * N * C, xp + i * N * C, w.data_ptr<float>() + i * C,
                        b.data_ptr<float>() + i * C, mean.data_ptr<float>() + i * G,
                        rstd.data_ptr<float>() + i * G, dxp + i * N * C,
                        dw.data_ptr<float>() + i * C, db.data_ptr<float>() + i * C, N, C, G, act);
    });
  });
  return {dx, dw, db};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "GroupNorm(+SiLU) forward, channels-last rows (B, N, C)");
  m.def("backward", &backward, "GroupNorm(+SiLU) backward, channels-last rows (B, N, C)");
}
