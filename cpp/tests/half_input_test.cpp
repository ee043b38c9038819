// Half-precision input of the row kernels (thermossl/half.hpp), at every SIMD level this build
// and CPU support:
//   1. the conversion, exhaustively: every one of the 65536 bfloat16 and float16 bit patterns is
//      read by row_logsumexp with weights that select one element (out = log(1 exp(x)) = x
//      exactly), in rows of 27 elements so the 16-wide, 8-wide and scalar parts of the
//      conversion loops all run, and compared with a value decoded here from the bit fields by
//      ldexp (an independent decoding);
//   2. the kernels' results on half matrices (contiguous and transposed views) against a long
//      double computation on the same half values: log Z, softmax, log_softmax, entropy,
//      cross-entropy and its gradient, entropy gradient, within float32 bounds;
//   3. the mixed cross-entropy (half scores, float labels: row_cross_entropy_float_labels), with
//      and without a shift and a gradient, contiguous and transposed: bitwise the float kernel's
//      results on the float values of the scores.
// Exit code 0 when every check passes.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "thermossl/gibbs.hpp"
#include "thermossl/logsumexp.hpp"
#include "thermossl/simd.hpp"

namespace {

int failures = 0;

void fail(const char* level, const char* type, const char* what, std::int64_t index, double got, double want) {
    if (failures < 20)
        std::printf("FAIL [%s %s] %s at %lld: got %.9g want %.9g\n", level, type, what, static_cast<long long>(index),
                    got, want);
    ++failures;
}

// Independent decodings from the bit fields.
double decode_bfloat16(std::uint16_t h) {
    const int sign = h >> 15, exponent = (h >> 7) & 0xff, mantissa = h & 0x7f;
    const double s = sign ? -1.0 : 1.0;
    if (exponent == 0xff) return mantissa ? std::numeric_limits<double>::quiet_NaN() : s * HUGE_VAL;
    if (exponent == 0) return s * std::ldexp(mantissa, -126 - 7);
    return s * std::ldexp(128 + mantissa, exponent - 127 - 7);
}

double decode_float16(std::uint16_t h) {
    const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    const double s = sign ? -1.0 : 1.0;
    if (exponent == 0x1f) return mantissa ? std::numeric_limits<double>::quiet_NaN() : s * HUGE_VAL;
    if (exponent == 0) return s * std::ldexp(mantissa, -14 - 10);
    return s * std::ldexp(1024 + mantissa, exponent - 15 - 10);
}

template <class H>
H make(std::uint16_t bits) {
    return H{bits};
}

// Nearest half value of x (for building test matrices): search is overkill; round through the
// decoded grid by bisection on the monotone positive patterns.
template <class H>
H nearest(double x, double (*decode)(std::uint16_t), std::uint16_t max_finite) {
    const bool negative = x < 0;
    const double a = std::fabs(x);
    std::uint16_t lo = 0, hi = max_finite;
    while (hi - lo > 1) {
        const std::uint16_t mid = static_cast<std::uint16_t>((lo + hi) / 2);
        (decode(mid) <= a ? lo : hi) = mid;
    }
    const std::uint16_t best = (a - decode(lo) <= decode(hi) - a) ? lo : hi;
    return H{static_cast<std::uint16_t>(best | (negative ? 0x8000 : 0))};
}

template <class H>
void exhaustive_conversion(const char* level, const char* type, double (*decode)(std::uint16_t), std::uint16_t one) {
    const std::int64_t k = 27;
    const std::int64_t n = (65536 + k - 1) / k;
    std::vector<H> a(static_cast<std::size_t>(n * k), make<H>(0));
    for (std::int64_t p = 0; p < 65536; ++p) a[p] = make<H>(static_cast<std::uint16_t>(p));
    std::vector<H> b(static_cast<std::size_t>(n * k));
    std::vector<float> out(static_cast<std::size_t>(n));
    const auto av = thermossl::MatrixView<H>::contiguous(a.data(), n, k);
    for (std::int64_t j = 0; j < k; ++j) {
        for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t c = 0; c < k; ++c) b[i * k + c] = make<H>(c == j ? one : 0);
        const auto bv = thermossl::MatrixView<H>::contiguous(b.data(), n, k);
        thermossl::row_logsumexp<H>(av, 1.0, nullptr, &bv, out.data(), nullptr);
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int64_t p = i * k + j;
            if (p >= 65536) break;
            const double want = decode(static_cast<std::uint16_t>(p));
            if (std::isinf(want)) continue;  // checked below (a non-finite log-sum-exp takes the plain sum)
            const double got = out[i];
            const bool same = std::isnan(want) ? std::isnan(got) : got == want;
            if (!same) fail(level, type, "conversion", p, got, want);
        }
    }
}

// The infinities, in rows of 27 equal elements: log-sum-exp = the element.
template <class H>
void infinities(const char* level, const char* type, std::uint16_t infinity_bits) {
    const std::int64_t k = 27;
    for (const std::uint16_t bits : {infinity_bits, static_cast<std::uint16_t>(infinity_bits | 0x8000)}) {
        std::vector<H> a(k, H{bits});
        float out = 0;
        thermossl::row_logsumexp<H>(thermossl::MatrixView<H>::contiguous(a.data(), 1, k), 1.0, nullptr, nullptr, &out,
                                    nullptr);
        const double want = (bits & 0x8000) ? -HUGE_VAL : HUGE_VAL;
        if (out != want) fail(level, type, "infinity", bits, out, want);
    }
}

struct Reference {
    std::vector<long double> log_z, entropy, loss;
    std::vector<long double> p, log_p, grad_ce, grad_s;
};

// Rows of x = scale * a (a decoded to long double), labels q (decoded).
Reference reference(const std::vector<double>& a, const std::vector<double>& q, std::int64_t n, std::int64_t k,
                    double scale) {
    Reference r;
    r.log_z.resize(n);
    r.entropy.resize(n);
    r.loss.resize(n);
    r.p.resize(n * k);
    r.log_p.resize(n * k);
    r.grad_ce.resize(n * k);
    r.grad_s.resize(n * k);
    for (std::int64_t i = 0; i < n; ++i) {
        long double m = -INFINITY;
        for (std::int64_t y = 0; y < k; ++y) m = std::max(m, scale * static_cast<long double>(a[i * k + y]));
        long double z = 0;
        for (std::int64_t y = 0; y < k; ++y) z += std::exp(scale * static_cast<long double>(a[i * k + y]) - m);
        r.log_z[i] = m + std::log(z);
        long double s = 0, loss = 0, q_sum = 0;
        for (std::int64_t y = 0; y < k; ++y) {
            const long double lp = scale * static_cast<long double>(a[i * k + y]) - r.log_z[i];
            r.log_p[i * k + y] = lp;
            r.p[i * k + y] = std::exp(lp);
            if (r.p[i * k + y] > 0) s -= r.p[i * k + y] * lp;
            if (q[i * k + y] != 0) loss -= q[i * k + y] * lp;
            q_sum += q[i * k + y];
        }
        r.entropy[i] = s;
        r.loss[i] = loss;
        for (std::int64_t y = 0; y < k; ++y) {
            const long double p = r.p[i * k + y];
            r.grad_ce[i * k + y] = -scale * (q[i * k + y] - p * q_sum);
            r.grad_s[i * k + y] = -scale * p * ((p > 0 ? r.log_p[i * k + y] : 0) + s);
        }
    }
    return r;
}

template <class H>
void kernels_on_half_values(const char* level, const char* type, double (*decode)(std::uint16_t),
                            std::uint16_t max_finite, std::uint16_t infinity_bits) {
    const std::int64_t n = 37, k = 301;
    const double scale = -1.0 / 0.3;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0.0, 2.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<H> a(n * k), q(n * k), a_t(n * k), q_t(n * k);  // *_t: column-major copies
    std::vector<double> a_value(n * k), q_value(n * k);
    for (std::int64_t i = 0; i < n; ++i) {
        double q_total = 0;
        std::vector<double> raw(k);
        for (auto& v : raw) q_total += (v = uniform(rng));
        for (std::int64_t y = 0; y < k; ++y) {
            a[i * k + y] = nearest<H>(normal(rng), decode, max_finite);
            q[i * k + y] = nearest<H>(raw[y] / q_total, decode, max_finite);
        }
    }
    a[3 * k + 7] = H{infinity_bits};
    q[3 * k + 7] = H{0};  // a forbidden state (+inf) with no label mass
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t y = 0; y < k; ++y) {
            a_value[i * k + y] = decode(a[i * k + y].bits);
            q_value[i * k + y] = decode(q[i * k + y].bits);
            a_t[y * n + i] = a[i * k + y];
            q_t[y * n + i] = q[i * k + y];
        }
    const Reference r = reference(a_value, q_value, n, k, scale);
    const double eps = std::ldexp(1.0, -23);
    const thermossl::MatrixView<H> views[2][2] = {
        {thermossl::MatrixView<H>::contiguous(a.data(), n, k), thermossl::MatrixView<H>::contiguous(q.data(), n, k)},
        {thermossl::MatrixView<H>{a_t.data(), n, k, 1, n}, thermossl::MatrixView<H>{q_t.data(), n, k, 1, n}}};
    for (const auto& pair : views) {
        const auto& av = pair[0];
        const auto& qv = pair[1];
        std::vector<float> log_z(n), s(n), s_lz(n), loss(n), p(n * k), log_p(n * k), g(n * k), gs(n * k);
        thermossl::row_logsumexp<H>(av, scale, nullptr, nullptr, log_z.data(), nullptr);
        thermossl::row_softmax<H>(av, scale, nullptr, p.data(), nullptr);
        thermossl::row_log_softmax<H>(av, scale, nullptr, log_p.data());
        thermossl::row_entropy<H>(av, scale, nullptr, s.data(), s_lz.data());
        thermossl::row_cross_entropy<H>(qv, av, scale, nullptr, loss.data(), g.data(), nullptr);
        thermossl::row_entropy_grad<H>(av, scale, nullptr, gs.data(), nullptr, nullptr);
        for (std::int64_t i = 0; i < n; ++i) {
            const auto within = [&](const char* what, double got, long double want, double bound) {
                if (!(std::fabs(got - static_cast<double>(want)) <= bound)) fail(level, type, what, i, got, want);
            };
            within("log_z", log_z[i], r.log_z[i], 2 * eps * std::fmax(1.0, std::fabs(static_cast<double>(r.log_z[i]))));
            within("entropy", s[i], r.entropy[i], 4 * eps * std::fmax(1.0, static_cast<double>(r.log_z[i] > 0 ? r.log_z[i] : -r.log_z[i])));
            within("loss", loss[i], r.loss[i], 4 * eps * std::fmax(1.0, std::fabs(static_cast<double>(r.loss[i]))));
            for (std::int64_t y = 0; y < k; ++y) {
                const std::int64_t e = i * k + y;
                if (r.p[e] == 0) {  // a forbidden state: exactly 0 everywhere (q = 0 there)
                    if (p[e] != 0 || g[e] != 0 || gs[e] != 0 || !(log_p[e] == -INFINITY))
                        fail(level, type, "forbidden state", e, p[e], 0.0);
                    continue;
                }
                // exp of t = x - max rounded in float: relative error ~ (|t| / 2 + a few) eps
                within("softmax", p[e], r.p[e], eps * static_cast<double>(r.p[e]) * (4 + std::fabs(static_cast<double>(r.log_p[e]))) + 1e-45);
                if (std::isinf(static_cast<double>(r.log_p[e]))) {
                    if (log_p[e] != static_cast<float>(r.log_p[e])) fail(level, type, "log_softmax -inf", e, log_p[e], r.log_p[e]);
                } else {
                    within("log_softmax", log_p[e], r.log_p[e], 4 * eps * std::fmax(1.0, std::fabs(static_cast<double>(r.log_p[e]))));
                }
                within("cross_entropy grad", g[e], r.grad_ce[e], eps * std::fabs(scale) * (8 * q_value[e] + static_cast<double>(r.p[e]) * (8 + std::fabs(static_cast<double>(r.log_p[e])))) + 1e-44);
                within("entropy grad", gs[e], r.grad_s[e], eps * std::fabs(scale) * static_cast<double>(r.p[e]) * (16 + 2 * std::fabs(static_cast<double>(r.log_p[e])) * (4 + std::fabs(static_cast<double>(r.log_p[e])))) + 1e-44);
            }
        }
    }
}

// Bitwise equality of two float arrays (nan-safe: compares the bits).
bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

template <class H>
void mixed_cross_entropy(const char* level, const char* type, double (*decode)(std::uint16_t),
                         std::uint16_t max_finite, std::uint16_t infinity_bits) {
    const std::int64_t n = 41, k = 263;  // k: 16-wide, 8-wide and masked tails at every level
    std::mt19937_64 rng(17);
    std::normal_distribution<double> normal(0.0, 3.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<H> a(n * k), a_t(n * k);
    std::vector<float> a_f(n * k), a_ft(n * k), q(n * k), q_t(n * k);
    for (std::int64_t i = 0; i < n; ++i) {
        double total = 0;
        for (std::int64_t y = 0; y < k; ++y) total += (q[i * k + y] = static_cast<float>(uniform(rng)));
        for (std::int64_t y = 0; y < k; ++y) {
            q[i * k + y] = static_cast<float>(q[i * k + y] / total);  // float labels, not half values
            a[i * k + y] = nearest<H>(normal(rng), decode, max_finite);
        }
    }
    a[5 * k + 11] = H{infinity_bits};  // a forbidden state with no label mass
    q[5 * k + 11] = 0;
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t y = 0; y < k; ++y) {
            a_f[i * k + y] = static_cast<float>(decode(a[i * k + y].bits));
            a_t[y * n + i] = a[i * k + y];
            a_ft[y * n + i] = a_f[i * k + y];
            q_t[y * n + i] = q[i * k + y];
        }
    std::vector<double> shift(k);
    for (auto& v : shift) v = normal(rng);
    const thermossl::MatrixView<H> half_views[2] = {thermossl::MatrixView<H>::contiguous(a.data(), n, k),
                                                    thermossl::MatrixView<H>{a_t.data(), n, k, 1, n}};
    const thermossl::MatrixView<float> float_views[2] = {thermossl::MatrixView<float>::contiguous(a_f.data(), n, k),
                                                         thermossl::MatrixView<float>{a_ft.data(), n, k, 1, n}};
    const thermossl::MatrixView<float> label_views[2] = {thermossl::MatrixView<float>::contiguous(q.data(), n, k),
                                                         thermossl::MatrixView<float>{q_t.data(), n, k, 1, n}};
    for (int layout = 0; layout < 2; ++layout)
        for (const double* sh : {static_cast<const double*>(nullptr), static_cast<const double*>(shift.data())})
            for (const bool with_grad : {true, false}) {
                std::vector<float> loss_h(n), lz_h(n), g_h(with_grad ? n * k : 0), loss_f(n), lz_f(n),
                    g_f(with_grad ? n * k : 0);
                thermossl::row_cross_entropy_float_labels<H>(label_views[layout], half_views[layout], -1.0 / 0.2, sh,
                                                             loss_h.data(), with_grad ? g_h.data() : nullptr,
                                                             lz_h.data());
                thermossl::row_cross_entropy<float>(label_views[layout], float_views[layout], -1.0 / 0.2, sh,
                                                    loss_f.data(), with_grad ? g_f.data() : nullptr, lz_f.data());
                const std::int64_t case_id = layout * 4 + (sh != nullptr) * 2 + with_grad;
                if (!same_bits(loss_h, loss_f)) fail(level, type, "mixed cross-entropy loss", case_id, loss_h[0], loss_f[0]);
                if (!same_bits(lz_h, lz_f)) fail(level, type, "mixed cross-entropy log_z", case_id, lz_h[0], lz_f[0]);
                if (!same_bits(g_h, g_f)) fail(level, type, "mixed cross-entropy grad", case_id, 0, 0);
                if (!std::isfinite(loss_h[5]) || (!g_h.empty() && g_h[5 * k + 11] != 0))
                    fail(level, type, "mixed cross-entropy forbidden state", case_id, loss_h[5], 0);
            }
}

}  // namespace

int main() {
    using thermossl::SimdLevel;
    for (const SimdLevel level : {SimdLevel::kBaseline, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
        if (!thermossl::simd_level_supported(level)) {
            std::printf("level %s: not supported here, skipped\n", thermossl::simd_level_name(level));
            continue;
        }
        thermossl::set_simd_level(level);
        const char* name = thermossl::simd_level_name(level);
        exhaustive_conversion<thermossl::bfloat16>(name, "bfloat16", decode_bfloat16, 0x3f80);
        exhaustive_conversion<thermossl::float16>(name, "float16", decode_float16, 0x3c00);
        infinities<thermossl::bfloat16>(name, "bfloat16", 0x7f80);
        infinities<thermossl::float16>(name, "float16", 0x7c00);
        kernels_on_half_values<thermossl::bfloat16>(name, "bfloat16", decode_bfloat16, 0x7f7f, 0x7f80);
        kernels_on_half_values<thermossl::float16>(name, "float16", decode_float16, 0x7bff, 0x7c00);
        mixed_cross_entropy<thermossl::bfloat16>(name, "bfloat16", decode_bfloat16, 0x7f7f, 0x7f80);
        mixed_cross_entropy<thermossl::float16>(name, "float16", decode_float16, 0x7bff, 0x7c00);
        std::printf("level %s: checked\n", name);
    }
    if (failures) {
        std::printf("%d failures\n", failures);
        return 1;
    }
    std::printf("half input: all checks passed\n");
    return 0;
}
