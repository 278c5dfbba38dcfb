// CUDA kernels for the generic per-pixel segment blur of pnpdeblur.
//
// This is the GPU twin of pnpdeblur/operators/_numba_kernels.py; read that module's
// docstring for the definition. In short, at pixel p the output sums S segments
//
//     y(p) = sum_i mass_i(p) * sum_k w_i(k) x(clamp(p + k)) / sum_k w_i(k)
//
// where segment i has vector a = vec_i(p), L = |a|, u = a / L, and for an integer
// offset k, t = k.u, s = |k x u|, h = L/2 + 1/2:
//
//     w(k) = max(0, 1 - s) * clip(h - |t - beta L|, 0, 1)        (L = 0: one tap at k = 0)
//
// Taps are enumerated along the segment's major axis, three offsets across it per
// step, exactly as `_taps` does. All geometry (weights, their derivatives, the
// normaliser) is computed in double precision whatever the image type, from the
// same formulas in the same order as the numba code, so float64 results agree with
// the CPU path to rounding (the compiler may fuse multiply-adds: ~1e-16 relative).
//
// Kernels (each instantiated for float and double images, suffix _f32 / _f64, with
// extern "C" names so that CuPy's RawModule can look them up without mangling):
//
//   segment_forward_*     y = K x. One thread per output pixel (gather); no atomics,
//                         deterministic. Channels are accumulated in double, in
//                         blocks of PNP_CB channels (the taps are re-enumerated per
//                         block, so C <= PNP_CB costs one enumeration).
//   segment_adjoint_*     x = K^T g, the exact transpose, as a scatter: one thread per
//                         *source* pixel p enumerates p's taps and atomicAdd()s
//                         w * g(p) into every clamp(p + k). The output must be zeroed
//                         by the caller. Why not a gather over the transposed
//                         footprint: p's kernel depends on p, so the set of pixels
//                         that reach q is only known by testing every p within the
//                         largest kernel radius R of q (about (2R+1)^2 = 2,600 weight
//                         evaluations per pixel at |m| = 46 px against ~160 for the
//                         scatter), and each test needs p's normaliser (a pre-pass)
//                         and special handling of the clamped border. The scatter is
//                         exact (the same products as the forward); only the order
//                         of the floating-point additions into one output pixel is
//                         decided by the hardware, so results can differ between
//                         runs in the last bits (float64: ~1e-16 relative; float32:
//                         ~1e-7 relative), never beyond rounding.
//   segment_param_grad_*  gradients of <K x, g> w.r.t. the segment vectors and the
//                         masses, per image (the caller sums over a shared flow's
//                         batch). One thread per pixel, no atomics, deterministic.
//
// Layouts (all C-contiguous): x, g, y: (N, C, H, W) of T; vec: (Nf, S, 2, H, W) and
// mass: (Nf, S, H, W) of double with Nf in {1, N}; gvec: (N, S, 2, H, W) and
// gmass: (N, S, H, W) of double. Launch with a 2-D block over (W, H) and
// gridDim.z = N.
//
// No #include: the file is compiled by NVRTC (through cupy.RawModule) and by nvcc in
// the tests; it needs C++17 (if constexpr, lambdas in device code) and atomicAdd on
// double (compute capability >= 6.0).

#ifndef PNP_CB
#define PNP_CB 4
#endif

namespace pnp {

// Weight of the integer offset (kx, ky) and, when GRAD, its gradient (gx, gy) w.r.t.
// the segment vector (a_x, a_y). Mirrors `_weight` in _numba_kernels.py. Needs L > 0.
template <bool GRAD>
__device__ __forceinline__ double tap_weight(double kx, double ky, double ux, double uy, double L,
                                             double h, double beta, double& gx, double& gy) {
    gx = 0.0;
    gy = 0.0;
    const double t = kx * ux + ky * uy;
    const double c = kx * uy - ky * ux;
    const double s = fabs(c);
    if (s >= 1.0) return 0.0;
    const double d = t - beta * L;
    const double q = h - fabs(d);
    if (q <= 0.0) return 0.0;
    const double wt = 1.0 - s;
    const double wc = q < 1.0 ? q : 1.0;
    if constexpr (GRAD) {
        const double sg = c > 0.0 ? 1.0 : (c < 0.0 ? -1.0 : 0.0);
        const double dsx = sg * (-ky - c * ux) / L;
        const double dsy = sg * (kx - c * uy) / L;
        double dqx = 0.0;
        double dqy = 0.0;
        if (q < 1.0) {
            const double sd = d > 0.0 ? 1.0 : (d < 0.0 ? -1.0 : 0.0);
            const double dtx = (kx - t * ux) / L;
            const double dty = (ky - t * uy) / L;
            dqx = 0.5 * ux - sd * (dtx - beta * ux);
            dqy = 0.5 * uy - sd * (dty - beta * uy);
        }
        gx = -dsx * wc + wt * dqx;
        gy = -dsy * wc + wt * dqy;
    }
    return wt * wc;
}

// Call f(kx, ky, w, dw/dax, dw/day) for every non-zero tap of the segment (ax, ay),
// in the order `_taps` fills its buffers. Mirrors `_taps` in _numba_kernels.py.
template <bool GRAD, class F>
__device__ __forceinline__ void for_each_tap(double ax, double ay, double beta, F&& f) {
    const double L = sqrt(ax * ax + ay * ay);
    if (L == 0.0) {
        f(0, 0, 1.0, 0.0, 0.0);
        return;
    }
    const double ux = ax / L;
    const double uy = ay / L;
    const double h = 0.5 * L + 0.5;
    const bool major_x = fabs(ax) >= fabs(ay);
    const double a_maj = major_x ? ax : ay;
    const double a_min = major_x ? ay : ax;
    const double c_maj = beta * a_maj;
    const double c_min = beta * a_min;
    const double extent = h * fabs(a_maj) / L + fabs(a_min) / L;
    const double slope = a_min / a_maj;
    const int lo = (int)ceil(c_maj - extent);
    const int hi = (int)floor(c_maj + extent);
    for (int k_maj = lo; k_maj <= hi; ++k_maj) {
        const int r = (int)floor(c_min + ((double)k_maj - c_maj) * slope + 0.5);
        for (int k_min = r - 1; k_min <= r + 1; ++k_min) {
            const int kx = major_x ? k_maj : k_min;
            const int ky = major_x ? k_min : k_maj;
            double gx, gy;
            const double w = tap_weight<GRAD>((double)kx, (double)ky, ux, uy, L, h, beta, gx, gy);
            if (w > 0.0) f(kx, ky, w, gx, gy);
        }
    }
}

__device__ __forceinline__ int clampi(int v, int hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

template <typename T>
__device__ __forceinline__ void forward_impl(const T* __restrict__ x, const double* __restrict__ vec,
                                             const double* __restrict__ mass, T* __restrict__ y, int N, int C,
                                             int H, int W, int Nf, int S, double beta) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (j >= W || i >= H || b >= N) return;
    const long long HW = (long long)H * W;
    const long long p = (long long)i * W + j;
    const int bf = Nf > 1 ? b : 0;
    const T* xb = x + (long long)b * C * HW;
    T* yb = y + (long long)b * C * HW;
    for (int c0 = 0; c0 < C; c0 += PNP_CB) {
        const int nc = C - c0 < PNP_CB ? C - c0 : PNP_CB;
        double acc[PNP_CB];
#pragma unroll
        for (int c = 0; c < PNP_CB; ++c) acc[c] = 0.0;
        for (int sg = 0; sg < S; ++sg) {
            const long long so = (long long)bf * S + sg;
            const double m = mass[so * HW + p];
            if (m == 0.0) continue;
            const double ax = vec[(so * 2 + 0) * HW + p];
            const double ay = vec[(so * 2 + 1) * HW + p];
            double tot = 0.0;
            double part[PNP_CB];
#pragma unroll
            for (int c = 0; c < PNP_CB; ++c) part[c] = 0.0;
            for_each_tap<false>(ax, ay, beta, [&](int kx, int ky, double w, double, double) {
                const long long q = (long long)clampi(i + ky, H - 1) * W + clampi(j + kx, W - 1);
                tot += w;
#pragma unroll
                for (int c = 0; c < PNP_CB; ++c)
                    if (c < nc) part[c] += w * (double)xb[(long long)(c0 + c) * HW + q];
            });
            const double scale = m / tot;
#pragma unroll
            for (int c = 0; c < PNP_CB; ++c) acc[c] += scale * part[c];
        }
#pragma unroll
        for (int c = 0; c < PNP_CB; ++c)
            if (c < nc) yb[(long long)(c0 + c) * HW + p] = (T)acc[c];
    }
}

template <typename T>
__device__ __forceinline__ void adjoint_impl(const T* __restrict__ g, const double* __restrict__ vec,
                                             const double* __restrict__ mass, T* __restrict__ out, int N, int C,
                                             int H, int W, int Nf, int S, double beta) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (j >= W || i >= H || b >= N) return;
    const long long HW = (long long)H * W;
    const long long p = (long long)i * W + j;
    const int bf = Nf > 1 ? b : 0;
    const T* gb = g + (long long)b * C * HW;
    T* ob = out + (long long)b * C * HW;
    for (int sg = 0; sg < S; ++sg) {
        const long long so = (long long)bf * S + sg;
        const double m = mass[so * HW + p];
        if (m == 0.0) continue;
        const double ax = vec[(so * 2 + 0) * HW + p];
        const double ay = vec[(so * 2 + 1) * HW + p];
        double tot = 0.0;
        for_each_tap<false>(ax, ay, beta, [&](int, int, double w, double, double) { tot += w; });
        const double scale = m / tot;
        for_each_tap<false>(ax, ay, beta, [&](int kx, int ky, double w, double, double) {
            const long long q = (long long)clampi(i + ky, H - 1) * W + clampi(j + kx, W - 1);
            const double wt = w * scale;
            for (int c = 0; c < C; ++c)
                atomicAdd(ob + (long long)c * HW + q, (T)(wt * (double)gb[(long long)c * HW + p]));
        });
    }
}

template <typename T>
__device__ __forceinline__ void param_grad_impl(const T* __restrict__ x, const T* __restrict__ g,
                                                const double* __restrict__ vec, const double* __restrict__ mass,
                                                double* __restrict__ gvec, double* __restrict__ gmass, int N,
                                                int C, int H, int W, int Nf, int S, double beta) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (j >= W || i >= H || b >= N) return;
    const long long HW = (long long)H * W;
    const long long p = (long long)i * W + j;
    const int bf = Nf > 1 ? b : 0;
    const T* xb = x + (long long)b * C * HW;
    const T* gb = g + (long long)b * C * HW;
    for (int sg = 0; sg < S; ++sg) {
        const long long so = (long long)bf * S + sg;
        const double ax = vec[(so * 2 + 0) * HW + p];
        const double ay = vec[(so * 2 + 1) * HW + p];
        double tot = 0.0, dtx = 0.0, dty = 0.0, yg = 0.0, gax = 0.0, gay = 0.0;
        for_each_tap<true>(ax, ay, beta, [&](int kx, int ky, double w, double wx, double wy) {
            const long long q = (long long)clampi(i + ky, H - 1) * W + clampi(j + kx, W - 1);
            double gt = 0.0;
            for (int c = 0; c < C; ++c)
                gt += (double)gb[(long long)c * HW + p] * (double)xb[(long long)c * HW + q];
            tot += w;
            dtx += wx;
            dty += wy;
            yg += w * gt;
            gax += wx * gt;
            gay += wy * gt;
        });
        const double m = mass[so * HW + p];
        const long long o = (long long)b * S + sg;
        gvec[(o * 2 + 0) * HW + p] = m / tot * (gax - dtx * yg / tot);
        gvec[(o * 2 + 1) * HW + p] = m / tot * (gay - dty * yg / tot);
        gmass[o * HW + p] = yg / tot;
    }
}

}  // namespace pnp

#define PNP_INSTANTIATE(T, SUF)                                                                              \
    extern "C" __global__ void segment_forward_##SUF(const T* __restrict__ x, const double* __restrict__ vec, \
                                                      const double* __restrict__ mass, T* __restrict__ y,     \
                                                      int N, int C, int H, int W, int Nf, int S,              \
                                                      double beta) {                                          \
        pnp::forward_impl<T>(x, vec, mass, y, N, C, H, W, Nf, S, beta);                                       \
    }                                                                                                         \
    extern "C" __global__ void segment_adjoint_##SUF(const T* __restrict__ g, const double* __restrict__ vec, \
                                                      const double* __restrict__ mass, T* __restrict__ out,   \
                                                      int N, int C, int H, int W, int Nf, int S,              \
                                                      double beta) {                                          \
        pnp::adjoint_impl<T>(g, vec, mass, out, N, C, H, W, Nf, S, beta);                                     \
    }                                                                                                         \
    extern "C" __global__ void segment_param_grad_##SUF(                                                      \
        const T* __restrict__ x, const T* __restrict__ g, const double* __restrict__ vec,                     \
        const double* __restrict__ mass, double* __restrict__ gvec, double* __restrict__ gmass, int N, int C, \
        int H, int W, int Nf, int S, double beta) {                                                           \
        pnp::param_grad_impl<T>(x, g, vec, mass, gvec, gmass, N, C, H, W, Nf, S, beta);                       \
    }

PNP_INSTANTIATE(float, f32)
PNP_INSTANTIATE(double, f64)
