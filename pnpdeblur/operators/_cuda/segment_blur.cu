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
// step, exactly as `_taps` does. The geometry (weights, normaliser) of K and K^T is
// computed in the image's type: double images agree with the CPU path to rounding
// (same formulas in the same order; the compiler may fuse multiply-adds: ~1e-16
// relative); float images use float throughout and agree to ~1e-6 relative, the
// rounding of the float image itself. (On an H100, where double runs at half the float
// rate, this saved ~10%: the kernel is not arithmetic-bound there; GeForce cards run
// double at 1/32-1/64 of the float rate.) The flow/mass gradients always use double.
//
// Kernels (each instantiated for float and double images, suffix _f32 / _f64, with
// extern "C" names so that CuPy's RawModule can look them up without mangling):
//
//   segment_forward_*     y = K x. One thread per output pixel (gather); no atomics,
//                         deterministic. Channels are accumulated in the image's
//                         type, in blocks of PNP_CB channels (the taps are re-enumerated per
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
template <class G, bool GRAD>
__device__ __forceinline__ G tap_weight(G kx, G ky, G ux, G uy, G L, G h, G beta, G& gx, G& gy) {
    gx = 0;
    gy = 0;
    const G t = kx * ux + ky * uy;
    const G c = kx * uy - ky * ux;
    const G s = fabs(c);
    if (s >= G(1)) return G(0);
    const G d = t - beta * L;
    const G q = h - fabs(d);
    if (q <= G(0)) return G(0);
    const G wt = G(1) - s;
    const G wc = q < G(1) ? q : G(1);
    if constexpr (GRAD) {
        const G sg = c > G(0) ? G(1) : (c < G(0) ? G(-1) : G(0));
        const G dsx = sg * (-ky - c * ux) / L;
        const G dsy = sg * (kx - c * uy) / L;
        G dqx = 0;
        G dqy = 0;
        if (q < G(1)) {
            const G sd = d > G(0) ? G(1) : (d < G(0) ? G(-1) : G(0));
            const G dtx = (kx - t * ux) / L;
            const G dty = (ky - t * uy) / L;
            dqx = G(0.5) * ux - sd * (dtx - beta * ux);
            dqy = G(0.5) * uy - sd * (dty - beta * uy);
        }
        gx = -dsx * wc + wt * dqx;
        gy = -dsy * wc + wt * dqy;
    }
    return wt * wc;
}

// Call f(kx, ky, w, dw/dax, dw/day) for every non-zero tap of the segment (ax, ay),
// in the order `_taps` fills its buffers. Mirrors `_taps` in _numba_kernels.py.
template <class G, bool GRAD, class F>
__device__ __forceinline__ void for_each_tap(G ax, G ay, G beta, F&& f) {
    const G L = sqrt(ax * ax + ay * ay);
    if (L == G(0)) {
        f(0, 0, G(1), G(0), G(0));
        return;
    }
    const G ux = ax / L;
    const G uy = ay / L;
    const G h = G(0.5) * L + G(0.5);
    const bool major_x = fabs(ax) >= fabs(ay);
    const G a_maj = major_x ? ax : ay;
    const G a_min = major_x ? ay : ax;
    const G c_maj = beta * a_maj;
    const G c_min = beta * a_min;
    const G extent = h * fabs(a_maj) / L + fabs(a_min) / L;
    const G slope = a_min / a_maj;
    const int lo = (int)ceil(c_maj - extent);
    const int hi = (int)floor(c_maj + extent);
    for (int k_maj = lo; k_maj <= hi; ++k_maj) {
        const int r = (int)floor(c_min + ((G)k_maj - c_maj) * slope + G(0.5));
        for (int k_min = r - 1; k_min <= r + 1; ++k_min) {
            const int kx = major_x ? k_maj : k_min;
            const int ky = major_x ? k_min : k_maj;
            G gx, gy;
            const G w = tap_weight<G, GRAD>((G)kx, (G)ky, ux, uy, L, h, beta, gx, gy);
            if (w > G(0)) f(kx, ky, w, gx, gy);
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
        T acc[PNP_CB];
#pragma unroll
        for (int c = 0; c < PNP_CB; ++c) acc[c] = T(0);
        for (int sg = 0; sg < S; ++sg) {
            const long long so = (long long)bf * S + sg;
            const T m = (T)mass[so * HW + p];
            if (m == T(0)) continue;
            const T ax = (T)vec[(so * 2 + 0) * HW + p];
            const T ay = (T)vec[(so * 2 + 1) * HW + p];
            T tot = T(0);
            T part[PNP_CB];
#pragma unroll
            for (int c = 0; c < PNP_CB; ++c) part[c] = T(0);
            for_each_tap<T, false>(ax, ay, (T)beta, [&](int kx, int ky, T w, T, T) {
                const long long q = (long long)clampi(i + ky, H - 1) * W + clampi(j + kx, W - 1);
                tot += w;
#pragma unroll
                for (int c = 0; c < PNP_CB; ++c)
                    if (c < nc) part[c] += w * xb[(long long)(c0 + c) * HW + q];
            });
            const T scale = m / tot;
#pragma unroll
            for (int c = 0; c < PNP_CB; ++c) acc[c] += scale * part[c];
        }
#pragma unroll
        for (int c = 0; c < PNP_CB; ++c)
            if (c < nc) yb[(long long)(c0 + c) * HW + p] = acc[c];
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
        const T m = (T)mass[so * HW + p];
        if (m == T(0)) continue;
        const T ax = (T)vec[(so * 2 + 0) * HW + p];
        const T ay = (T)vec[(so * 2 + 1) * HW + p];
        T tot = T(0);
        for_each_tap<T, false>(ax, ay, (T)beta, [&](int, int, T w, T, T) { tot += w; });
        const T scale = m / tot;
        for_each_tap<T, false>(ax, ay, (T)beta, [&](int kx, int ky, T w, T, T) {
            const long long q = (long long)clampi(i + ky, H - 1) * W + clampi(j + kx, W - 1);
            const T wt = w * scale;
            for (int c = 0; c < C; ++c)
                atomicAdd(ob + (long long)c * HW + q, wt * gb[(long long)c * HW + p]);
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
        for_each_tap<double, true>(ax, ay, beta, [&](int kx, int ky, double w, double wx, double wy) {
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
