// CUDA kernels for the dual iterations of the TV proximal map (pnpdeblur.priors.classical.tv_prox).
//
// The GPU twin of pnpdeblur/priors/_tv_numba.py; read that module's docstring for the
// algorithm (Beck & Teboulle's fast gradient projection on the dual). One iteration is two
// launches instead of about fifteen torch passes with as many temporaries:
//
//   tv_primal_*     x = z - tau * grad^T q        (grad^T the exact transpose of the forward
//                                                  differences, Neumann boundary)
//   tv_dual_step_*  pn = P(q + step * grad x)     (P: projection onto the unit ball, jointly
//                                                  over both differences and the channels when
//                                                  coupled, per channel otherwise)
//                   qn = pn + mom * (pn - p)
//                   dsq, nsq: per pixel, sum over channels and differences of (pn - p)^2 and
//                   pn^2 in double (the caller sums them: the stopping rule)
//
// The arithmetic is the torch path's, operation by operation, in the image type T (the
// scalars tau, step, mom are given in T, as torch applies Python scalars to a tensor). The
// module is compiled with --fmad=false so that a * b + c is rounded twice, as torch's
// separate element-wise passes round it: the two paths then agree to the rounding of the
// square root and of the order of the stopping sums.
//
// Layouts (C-contiguous): z, x: (N, C, H, W) of T; p, q, pn, qn: (N, 2, C, H, W) of T (x then
// y differences); dsq, nsq: (N, H, W) of double. Launch with a 2-D block over (W, H); for
// tv_primal_* gridDim.z = N * C, for tv_dual_step_* gridDim.z = N.
//
// No #include: compiled by NVRTC through cupy.RawModule (and as host C++ in the tests).

namespace pnp_tv {

template <class T>
__device__ __forceinline__ void primal_impl(const T* __restrict__ z, const T* __restrict__ q, T tau,
                                            T* __restrict__ x, int N, int C, int H, int W) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int nc = blockIdx.z;  // n * C + c
    if (i >= H || j >= W || nc >= N * C) return;
    const int n = nc / C, c = nc % C;
    const long long HW = (long long)H * W;
    const T* qx = q + ((long long)(n * 2 + 0) * C + c) * HW;
    const T* qy = q + ((long long)(n * 2 + 1) * C + c) * HW;
    const long long pix = (long long)i * W + j;
    // the torch path's order: -px, +px(left), -py, +py(above)
    T g = T(0);
    if (j < W - 1) g -= qx[pix];
    if (j > 0) g += qx[pix - 1];
    if (i < H - 1) g -= qy[pix];
    if (i > 0) g += qy[pix - W];
    const long long at = (long long)nc * HW + pix;
    x[at] = z[at] - tau * g;
}

template <class T>
__device__ __forceinline__ T ball(T sq) {
    const T f = sqrt(sq);
    return f > T(1) ? f : T(1);
}

template <class T>
__device__ __forceinline__ void dual_step_impl(const T* __restrict__ x, const T* __restrict__ p,
                                               const T* __restrict__ q, T step, T mom, int coupled,
                                               T* __restrict__ pn, T* __restrict__ qn,
                                               double* __restrict__ dsq, double* __restrict__ nsq,
                                               int N, int C, int H, int W) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int n = blockIdx.z;
    if (i >= H || j >= W || n >= N) return;
    const long long HW = (long long)H * W;
    const long long pix = (long long)i * W + j;
    const T* xn = x + (long long)n * C * HW;
    // dual arrays: (n, d, c) plane at ((n * 2 + d) * C + c) * HW
    const long long base0 = (long long)(n * 2 + 0) * C * HW;
    const long long base1 = (long long)(n * 2 + 1) * C * HW;
    T s = T(0);
    for (int c = 0; c < C; ++c) {
        const T* xc = xn + (long long)c * HW;
        const T gx = j < W - 1 ? xc[pix + 1] - xc[pix] : T(0);
        const T gy = i < H - 1 ? xc[pix + W] - xc[pix] : T(0);
        const long long a0 = base0 + (long long)c * HW + pix, a1 = base1 + (long long)c * HW + pix;
        const T a = q[a0] + step * gx;
        const T b = q[a1] + step * gy;
        pn[a0] = a;
        pn[a1] = b;
        s += a * a;
        s += b * b;
    }
    if (coupled) {
        const T f = ball(s);
        for (int c = 0; c < C; ++c) {
            const long long a0 = base0 + (long long)c * HW + pix, a1 = base1 + (long long)c * HW + pix;
            pn[a0] = pn[a0] / f;
            pn[a1] = pn[a1] / f;
        }
    } else {
        for (int c = 0; c < C; ++c) {
            const long long a0 = base0 + (long long)c * HW + pix, a1 = base1 + (long long)c * HW + pix;
            const T a = pn[a0], b = pn[a1];
            const T f = ball(a * a + b * b);
            pn[a0] = a / f;
            pn[a1] = b / f;
        }
    }
    double sd = 0.0, sn = 0.0;
    for (int c = 0; c < C; ++c) {
        for (int d = 0; d < 2; ++d) {
            const long long at = (d ? base1 : base0) + (long long)c * HW + pix;
            const T v = pn[at];
            const T old = p[at];
            qn[at] = v + mom * (v - old);
            const double e = (double)v - (double)old;
            sd += e * e;
            sn += (double)v * (double)v;
        }
    }
    dsq[(long long)n * HW + pix] = sd;
    nsq[(long long)n * HW + pix] = sn;
}

}  // namespace pnp_tv

#define PNP_TV_INSTANTIATE(T, SUF)                                                                      \
extern "C" __global__ void tv_primal_##SUF(const T* z, const T* q, T tau, T* x, int N, int C, int H,    \
                                           int W) {                                                     \
    pnp_tv::primal_impl<T>(z, q, tau, x, N, C, H, W);                                                   \
}                                                                                                       \
extern "C" __global__ void tv_dual_step_##SUF(const T* x, const T* p, const T* q, T step, T mom,        \
                                              int coupled, T* pn, T* qn, double* dsq, double* nsq,      \
                                              int N, int C, int H, int W) {                             \
    pnp_tv::dual_step_impl<T>(x, p, q, step, mom, coupled, pn, qn, dsq, nsq, N, C, H, W);               \
}

PNP_TV_INSTANTIATE(float, f32)
PNP_TV_INSTANTIATE(double, f64)
