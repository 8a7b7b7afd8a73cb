//! The exact (erf) GELU of the prior's and the CLIP encoders' feed-forward layers and the SiLU
//! of the decoders, with vectorised paths for burn's CPU backend.
//!
//! burn-flex 0.22.1 evaluates `gelu` element by element with `libm::erff` on one thread (16 ns
//! an element here: 21 ms of each prior block's 122 ms). [`gelu`] computes it in place in the
//! flex tensor's own buffer, in parallel, with a rational erf that the compiler vectorises:
//! erf(x) ≈ x·P(x²)/Q(x²) on x clamped to [−4, 4] (beyond which erf is ±1 in f32), P of degree
//! 6 and Q of degree 4 in x², the approximation of Eigen's and XLA's float erf. Its error is a
//! few f32 roundings (the test below bounds it against libm's f64 erf: 1e-6 absolute), the same
//! order as PyTorch's own vectorised erf (Abramowitz–Stegun 7.1.26, 1.5e-7). Other backends and
//! dtypes use burn's `gelu`.

use burn::tensor::activation;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

/// GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)), as PyTorch's `gelu(approximate="none")`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(x, activation::gelu, gelu_in_place)
}

/// SiLU(x) = x·σ(x), as PyTorch's `silu`: in place and in parallel on burn's CPU backend (f32),
/// with the vectorised element function the fused norms use; burn's `silu` elsewhere.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(x, activation::silu, silu_in_place)
}

/// `in_place` over the elements of `x`, in its own buffer and in parallel, when `x` is f32 on
/// burn's CPU backend; `burn`'s op otherwise.
fn on_host<const D: usize>(
    x: Tensor<D>,
    burn: fn(Tensor<D>) -> Tensor<D>,
    in_place: fn(&mut [f32]),
) -> Tensor<D> {
    if x.dtype() != DType::F32 || !crate::tensors::is_flex(&x.device()) {
        return burn(x);
    }
    let device = x.device();
    let mut data = x.into_data();
    data.as_mut_slice::<f32>()
        .expect("f32 tensor")
        .par_chunks_mut(1 << 14)
        .for_each(in_place);
    Tensor::from_data(data, &device)
}

/// [`gelu_f32`] over a slice in place (see [`map_in_place`]).
fn gelu_in_place(values: &mut [f32]) {
    map_in_place(values, gelu_f32);
}

/// [`silu_f32`] over a slice in place (see [`map_in_place`]).
pub(crate) fn silu_in_place(values: &mut [f32]) {
    map_in_place(values, silu_f32);
}

/// `f` applied to each value in place, in a loop compiled for AVX-512 and for AVX2 too, taken
/// when the CPU has them (the same operations on wider vectors: the same results). The crates
/// are built for baseline x86-64, where the loop runs 4 lanes wide. `f` is inlined into each
/// variant (the element functions are `#[inline(always)]`).
fn map_in_place<F: Fn(f32) -> f32>(values: &mut [f32], f: F) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { map_in_place_avx512(values, f) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { map_in_place_avx2(values, f) };
        }
    }
    map_in_place_generic(values, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn map_in_place_avx512<F: Fn(f32) -> f32>(values: &mut [f32], f: F) {
    map_in_place_generic(values, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn map_in_place_avx2<F: Fn(f32) -> f32>(values: &mut [f32], f: F) {
    map_in_place_generic(values, f);
}

#[inline(always)]
fn map_in_place_generic<F: Fn(f32) -> f32>(values: &mut [f32], f: F) {
    for v in values {
        *v = f(*v);
    }
}

/// SiLU x·σ(x) = x / (1 + e^−x) of one value, with [`exp_f32`].
#[inline(always)]
fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// e^x in f32 for loops the compiler vectorises: x = n·ln 2 + r with |r| ≤ ½ ln 2 (ln 2 split
/// in two for an exact n·ln 2), e^r by Cephes' degree-6 polynomial, 2^n put in the exponent
/// bits. Within 2 ulp of the true value on [−87, 88]; inputs are clamped there (e^−87 is
/// 1.6e-38, the smallest normal f32's order, e^88 near the largest).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // n as an integer without a float-to-int conversion (which the compiler does not
    // vectorise): t lies in [2^23, 2^24), where one unit is one step of the bits.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits());
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(n_int.wrapping_add(127) << 23)
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// P's coefficients, highest power of x² first.
const P: [f64; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
/// Q's coefficients, highest power of x² first.
const Q: [f64; 5] = [
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
];

/// erf(x) as x·P(x²)/Q(x²) on [−4, 4].
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0f32, |acc, &c| acc * x2 + c as f32);
    let q = Q.iter().fold(0.0f32, |acc, &c| acc * x2 + c as f32);
    x * p / q
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The rational erf against libm's f64 erf on a dense grid over [−6, 6]: within 1e-6
    /// absolute (a few f32 roundings of values ≤ 1).
    #[test]
    fn erf_is_within_a_few_roundings() {
        let worst = (-60_000..=60_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| (erf_f32(x) as f64 - libm::erf(x as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "max |erf error| {worst}");
    }

    /// The vectorisable e^x against f64's on a dense grid over [−87, 88]: within 2e-7 relative
    /// (about 2 ulp).
    #[test]
    fn exp_is_within_two_ulp() {
        let worst = (-870_000..=880_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| ((exp_f32(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 2.4e-7, "max relative exp error {worst}");
    }

    /// The flex path against burn's (libm's erff) GELU: 2e-6 relative to max(1, |x|).
    #[test]
    fn gelu_equals_burns() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 81, 300], Distribution::Normal(0.0, 3.0), &device);
        let ours = gelu(x.clone());
        let reference = activation::gelu(x.clone());
        let bound = x.abs().clamp_min(1.0) * 2e-6;
        let excess = ((ours - reference).abs() - bound)
            .max()
            .into_scalar::<f32>();
        assert!(excess <= 0.0, "error exceeds the bound by {excess}");
    }

    /// The flex path against burn's SiLU: 1e-6 relative to max(1, |x|) (e^x within 2 ulp, one
    /// division and one addition more).
    #[test]
    fn silu_equals_burns() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 81, 300], Distribution::Normal(0.0, 5.0), &device);
        let ours = silu(x.clone());
        let reference = activation::silu(x.clone());
        let bound = x.abs().clamp_min(1.0) * 1e-6;
        let excess = ((ours - reference).abs() - bound)
            .max()
            .into_scalar::<f32>();
        assert!(excess <= 0.0, "error exceeds the bound by {excess}");
    }
}
