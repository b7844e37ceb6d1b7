//! European options in deterministic fixed point: the standard normal CDF, Black-Scholes with a continuous yield,
//! Black-76, and the delta, for the engine's option margin.
//!
//! Every function here uses integer arithmetic only (no floats), so it returns the same bits on every platform, and
//! none of them panics on any input: out-of-range inputs return a [`NumError`]. Inputs and outputs are `i128` at scale
//! 10^18 (raw `10^18` is 1.0), the scale of [`crate::Ratio`]. The f64 reference these functions are tested against
//! is `ballast_risk::EuropeanOption`; its conventions (and `docs/risk.md`, "Option pricing") apply here too.
//!
//! # The normal CDF
//!
//! [`normal_cdf_fixed`] evaluates the upper tail `Q(y) = 1 - N(y)` at `y = |x|` and mirrors it, `N(x) = Q(-x)` for
//! `x < 0` and `1 - Q(x)` for `x >= 0`, so `N(-x) + N(x)` is exactly `10^18`.
//!
//! * **Method: a piecewise Taylor expansion of the normal integral.** The tail is tabulated at nodes `y_j = j D`,
//!   `D = 2^55` raw units (`0.036028797018963968`), so the node index and the offset of an input are a shift and a
//!   mask of its raw value. Since `n(y_j + t) = n(y_j) e^(-y_j t - t^2/2)` exactly (`n` the normal density),
//!   `Q(y_j + h) = Q(y_j) - n(y_j) * integral_0^h e^(-y_j t - t^2/2) dt`. The integrand's Taylor coefficients obey
//!   `(k+1) a_(k+1) = -y_j a_k - a_(k-1)`, `a_0 = 1`, so with `u = h / D` in `[0, 1)` the integral is
//!   `D * sum_(k < 12) b_k u^(k+1)`, `b_k = a_k D^k / (k + 1)`; the omitted terms are below `2^-82`. An evaluation
//!   is one table lookup and a 12-term Horner polynomial of 64-by-64-bit products: no division, no 256-bit
//!   arithmetic.
//! * **Table.** 251 nodes (`y` from 0 to 9.007) of `Q(y_j)` and `n(y_j) D` at scale 2^64 and the `b_k` at scale
//!   2^62, 26 KiB. It is built at compile time by the same expansion, stepped node to node from `Q(0) = 1/2` and
//!   `n(0) = 1/sqrt(2 pi)` with 118 to 127 fractional bits and 28 terms, then rounded. Every entry is checked against
//!   an independent 80-digit big-integer evaluation in the tests.
//! * **Error bound.** `|normal_cdf_fixed(x) - N(x / 10^18) 10^18| <= 0.65` raw units: the result is the correctly
//!   rounded one unless the exact value lies within 0.15 raw units of a rounding tie, and never more than one raw
//!   unit (`10^-18`) off. (Internally the tail is within 2.5 units of 2^-64, `1.4 * 10^-19`: half a unit from each
//!   table entry, up to 13 units of 2^-62 in the polynomial times `n(y_j) D <= 0.015`, one from the last product.)
//!   Tested against the reference at, around and between every node: the largest error seen is 0.56 raw units.
//! * **Saturation.** For `|x| >= 9` ([`NORMAL_CDF_SATURATION`]) the result is exactly 0 or exactly `10^18`. (The
//!   exact tail is below `0.5 * 10^-18` beyond `|x| = 8.84`, so the rounded result is already 0 or `10^18` there.)
//! * **Monotone.** `normal_cdf_fixed` is non-decreasing in `x`, step by step of one raw unit, by construction: within
//!   a piece, one raw unit of `x` moves `u` by 256 units of 2^-63, which raises the exact integral by at least
//!   `0.72 * 256 / 2 = 92` units of 2^-62 (the integrand is at least `e^(-9 D - D^2/2) = 0.72`), while the
//!   polynomial's rounding errors all lie in `[-13, 0]` units of 2^-62; every later step (a product by a positive
//!   number, a floor, a subtraction from the node value) is monotone; and the value on a piece is clamped to
//!   `[Q(y_(j+1)), Q(y_j)]` of its end nodes, where the next piece starts. Tested on random pairs and on every raw
//!   step around every node.
//!
//! # Pricing
//!
//! [`european_price`] prices a European call or put under Black-Scholes with a continuous yield `q`:
//!
//! ```text
//! F = S e^((r-q)T)        s = vol sqrt(T)        d1 = ln(F/K) / s + s/2        d2 = d1 - s
//! call = S e^(-qT) N(d1) - K e^(-rT) N(d2)          put = K e^(-rT) N(-d2) - S e^(-qT) N(-d1)
//! ```
//!
//! The put uses the mirror formula, not put-call parity, so a deep out-of-the-money put is a small difference of two
//! small numbers, not of two large ones. **Black-76** (the underlying is the forward `F` for the option's expiry,
//! discounted at `r`) is the same formula with `S = F` and `q = r`: [`EuropeanInputs::black76`].
//!
//! * **Logarithms and exponentials** have 64 fractional bits, not the 120 of [`crate::math`] (which would cost three
//!   quarters of the time and add nothing at this output scale): `ln x` of the raw integer (`x = m 2^e`, the
//!   mantissa cut to 64 bits, a 64-entry table around `m`, a 10-term series of `ln(1 + t)` with `|t| <= 2^-7`;
//!   within 5 units of 2^-64, `2.7 * 10^-19`) and `e^y` (`y = k ln 2 + j/64 + p`, a 45-entry table of `e^(j/64)`, a
//!   9-term series of `e^p` with `p < 1/64`; within a relative `2^-61` before a final floor). Tables built at compile
//!   time, checked against the 80-digit reference; each Horner step is one 64-by-64-bit product.
//! * **Steps.** `rT` and `qT` at scale 10^18, rounded down, then at scale 2^64. The legs are
//!   `S e^(-qT) = floor(e^(ln S - qT))` and `K e^(-rT) = floor(e^(ln K - rT))`, so their error is relative (about
//!   `2 * 10^-18`) however small the discount factor (exactly `S` or `K` when `qT` or `rT` is 0). `ln(F/K)` is the
//!   difference of the legs' exponents, so a tiny `S/K` loses nothing to the rounding of a quotient;
//!   `s = vol floor(sqrt(T))`, rounded down; `d1` once, rounded down, and `d2 = d1 - s` exactly, so the rounding of
//!   `ln(F/K) / s` moves `d1` and `d2` together, and to first order such a common shift changes nothing
//!   (`S e^(-qT) n(d1) = K e^(-rT) n(d2)`): even at `s = 1.8 * 10^-6` (one second at 1 % volatility), where `d1` is
//!   only good to about `10^-12`, the price is not. Each leg times `N` uses the tail at scale 2^64, not the rounded
//!   `N`, and is rounded down.
//! * **Bounds.** The result is clamped to the no-arbitrage bounds of the legs: a call to
//!   `[max(S e^(-qT) - K e^(-rT), 0), S e^(-qT)]`, a put to `[max(K e^(-rT) - S e^(-qT), 0), K e^(-rT)]`. So it is
//!   never negative and never above `S e^(-qT)` (call) or `K e^(-rT)` (put). Since `leg N(d) + leg N(-d)` is the leg
//!   exactly, `call - put` is `S e^(-qT) - K e^(-rT)` of the same legs to one raw unit.
//! * **Edge cases.** `T = 0` or `vol = 0` (more exactly: `s` rounds to 0 raw) gives the discounted intrinsic value of
//!   the forward, `max(S e^(-qT) - K e^(-rT), 0)` for a call, of the same legs (at `T = 0`, exactly `max(S - K, 0)`).
//!   When `|ln(F/K)| >= 2^20 s` both `N` are exactly 0 or 1 and the price is that intrinsic value.
//! * **Delta.** [`european_delta`]: `e^(-qT) N(d1)` for a call, `-e^(-qT) N(-d1) = e^(-qT) (N(d1) - 1)` for a put,
//!   per unit of the underlying (of `F` for Black-76). At `s = 0`: a call's delta is `e^(-qT)` in the money, 0 out
//!   of the money and `e^(-qT) / 2` at `F = K` (the limit of `N(d1)`); a put's is the call's minus `e^(-qT)`.
//!
//! # Domain, limits and error bound
//!
//! **Limits** (outside them every function returns [`NumError::Domain`] naming the input and the rule): spot and
//! strike in `(0, 10^12]` USD per whole token, `vol` in `[0, 100]` per square root of a year, `years` in
//! `[0, 100]`, `rate` and `carry_yield` in `[-10, 10]` per year, and `|rate * years|`, `|carry_yield * years|` at
//! most 40. A leg `S e^(-qT)` or `K e^(-rT)` that does not fit `i128` is [`NumError::Overflow`].
//!
//! **Accuracy domain** (where the bounds below are claimed and tested): spot and strike in `[10^-6, 10^9]` USD,
//! `vol` in `[0.01, 10]`, `years` in `[1 / 31_536_000, 10]` (one second to ten years), `rate` and `carry_yield` in
//! `[-1, 1]`. With `M = max(S e^(-qT), K e^(-rT))`, the larger discounted leg (USD per whole token),
//!
//! ```text
//! |european_price - exact price| <= 2 * 10^-17 * M + 4 * 10^-18          (PRICE_ERROR_PER_LEG, PRICE_ERROR_ABS)
//! ```
//!
//! "Exact price" is the Black-Scholes value of the same fixed-point inputs (exact rationals), computed to 80 digits
//! with big integers in the tests. Where the bound comes from: each leg carries a relative error of about
//! `2 * 10^-18` (the rounding of its exponent), each `N` adds `1.4 * 10^-19` of its leg, and the rounding of `s`, up
//! to `(vol + 1) * 10^-18`, moves the price by at most `0.4 M` times that; with four roundings of one raw unit this
//! sums to `(4.3 + 0.4 vol) * 10^-18 * M + 4 * 10^-18`, at most `8.3 * 10^-18 * M` in the accuracy domain. The
//! largest seen on 100,000 random inputs is `3.8 * 10^-18 * M`. Since `M <= e^10 max(S, K)` in the accuracy domain,
//! the bound in the form `a * max(S, K) + b` is `4.5 * 10^-13 * max(S, K) + 4 * 10^-18`, and
//! `5.5 * 10^-17 * max(S, K) + 4 * 10^-18` when `|rT|` and `|qT|` are at most 1. [`price_error_bound_ceil`] returns
//! the bound for one set of inputs, rounded up, for a caller that wants a price never below (or above) the exact one.
//!
//! The delta is within `10^-18 * e^(-qT) * (2 + vol) * (1 + 1/s) + 2 * 10^-18` of the exact one (`d1`'s error is
//! about `4 * 10^-18 / s` and does not cancel here): `2.2 * 10^-16` at 20 % volatility and `s = 0.01`.
//!
//! Against the f64 reference the price differs by at most `10^-14 * M + 10^-17` (largest seen `3 * 10^-15 * M`):
//! nearly all of it is the f64 side's rounding (Hull's call: exact `4.759422392871533395`, fixed point within
//! `2 * 10^-16`, f64 `4.759422392871542`).

use crate::math::{mul_wide, sqrt_u128_floor, LN2_128, LN_1E18_120};
use crate::{mul_div, NumError, NumResult, Rounding};

#[cfg(test)]
mod tests;

/// Raw units of 1.0 at scale 10^18.
const ONE: i128 = 1_000_000_000_000_000_000;

/// `|x|` (scale 10^18) at and beyond which [`normal_cdf_fixed`] is exactly 0 (below `-9`) or exactly `10^18`
/// (above `9`).
pub const NORMAL_CDF_SATURATION: i128 = 9 * ONE;

/// Largest spot, forward or strike accepted: 10^12 USD per whole token (scale 10^18).
pub const OPTION_PRICE_MAX: i128 = 1_000_000_000_000 * ONE;
/// Largest volatility accepted: 100 per square root of a year, i.e. 10,000 % (scale 10^18).
pub const OPTION_VOL_MAX: i128 = 100 * ONE;
/// Longest time to expiry accepted: 100 years (scale 10^18).
pub const OPTION_YEARS_MAX: i128 = 100 * ONE;
/// Largest `|rate|` and `|carry_yield|` accepted: 10 per year, continuously compounded (scale 10^18).
pub const OPTION_RATE_ABS_MAX: i128 = 10 * ONE;
/// Largest `|rate * years|` and `|carry_yield * years|` accepted: 40 (scale 10^18). Keeps `e^(-rT)` and `e^(-qT)`
/// within `[e^-40, e^40]`.
pub const OPTION_EXPONENT_ABS_MAX: i128 = 40 * ONE;

/// The error bound of [`european_price`] per unit of the larger discounted leg `M = max(S e^(-qT), K e^(-rT))`:
/// `2 * 10^-17`, scale 10^18 (raw 20). See the module doc.
pub const PRICE_ERROR_PER_LEG: i128 = 20;
/// The absolute part of the error bound of [`european_price`]: `4 * 10^-18` USD per whole token, scale 10^18.
pub const PRICE_ERROR_ABS: i128 = 4;

// -------------------------------------------------------------------------------------------------------------------
// The normal CDF
// -------------------------------------------------------------------------------------------------------------------

/// log2 of the table's node spacing in raw units: nodes at `j * 2^55` raw, i.e. `j * 0.036028797018963968`.
const GRID_SHIFT_RAW: u32 = 55;
/// Pieces of the table: piece `j` covers `[j, j + 1) * 2^55` raw; the last one contains 9.0.
const GRID_PIECES: usize = 250;
const GRID_NODES: usize = GRID_PIECES + 1;
const _: () = assert!(((GRID_PIECES as i128) << GRID_SHIFT_RAW) > NORMAL_CDF_SATURATION);
const _: () = assert!((((GRID_PIECES - 1) as i128) << GRID_SHIFT_RAW) < NORMAL_CDF_SATURATION);
const _: () = assert!(NORMAL_CDF_SATURATION < 1 << 64);
/// Terms `b_0 .. b_11` of the integral's polynomial at run time.
const SERIES_TERMS: usize = 12;

/// One node of the tail table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TailNode {
    /// `Q(y_j) = 1 - N(y_j)` at scale 2^64, rounded to nearest.
    tail_q64: u64,
    /// `n(y_j) * D` (the density times the node spacing) at scale 2^64, rounded to nearest.
    density_step_q64: u64,
    /// `b_k = a_k D^k / (k + 1)` at scale 2^62, rounded to nearest: `integral_0^(uD) e^(-y_j t - t^2/2) dt / D =
    /// sum_k b_k u^(k+1)`.
    coeffs_q62: [i64; SERIES_TERMS],
}

/// The tail table, built at compile time (see the module doc).
static TAIL_TABLE: [TailNode; GRID_NODES] = build_tail_table();

/// Fractional bits of the compile-time series coefficients `a_k D^k`.
const BUILD_FRAC_BITS: u32 = 118;
/// Terms of the compile-time series: `(9 D)^28 / 28!` is about `10^-43`, far below its resolution of 2^-118.
const BUILD_TERMS: usize = 28;
/// `floor(2^127 / sqrt(2 pi))`: the normal density at 0, checked in the tests against a big-integer evaluation.
const INV_SQRT_2PI_127: u128 = 0x3310_8a67_a86c_a11a_1f96_78a0_1757_1c5f;
/// `floor(D * 2^127)`, `D = 2^55 / 10^18`.
const STEP_127: u128 = floor_pow2_div(GRID_SHIFT_RAW + 127, ONE as u128);
/// `floor(D^2 * 2^127)`.
const STEP_SQUARED_127: u128 = floor_pow2_div(2 * GRID_SHIFT_RAW + 127, (ONE * ONE) as u128);

/// `floor(2^shift / divisor)` by binary long division, for `1 < divisor < 2^127` and a quotient below 2^128.
const fn floor_pow2_div(shift: u32, divisor: u128) -> u128 {
    let mut remainder: u128 = 1;
    let mut quotient: u128 = 0;
    let mut i = 0;
    while i < shift {
        remainder <<= 1;
        quotient <<= 1;
        if remainder >= divisor {
            remainder -= divisor;
            quotient |= 1;
        }
        i += 1;
    }
    quotient
}

/// `(hi * 2^128 + lo) >> shift` for `1 <= shift <= 128`, when the result fits in 128 bits.
const fn shr_wide((hi, lo): (u128, u128), shift: u32) -> u128 {
    if shift == 128 {
        hi
    } else {
        (hi << (128 - shift)) | (lo >> shift)
    }
}

/// `a * b / 2^shift`, truncated toward zero, for `b >= 0`.
const fn mul_shr_signed(a: i128, b: u128, shift: u32) -> i128 {
    let magnitude = shr_wide(mul_wide(a.unsigned_abs(), b), shift) as i128;
    if a < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// A value at scale 2^127, rounded to nearest at scale 2^64.
const fn round_127_to_64(v: u128) -> u64 {
    ((v + (1 << 62)) >> 63) as u64
}

const fn build_tail_table() -> [TailNode; GRID_NODES] {
    let mut table = [TailNode {
        tail_q64: 0,
        density_step_q64: 0,
        coeffs_q62: [0; SERIES_TERMS],
    }; GRID_NODES];
    // Q(y_j) and n(y_j) at scale 2^127.
    let mut tail_127: u128 = 1 << 126;
    let mut density_127: u128 = INV_SQRT_2PI_127;
    let mut j = 0;
    while j < GRID_NODES {
        // a_k D^k at scale 2^118: (k+1) a'_(k+1) = -(y_j D a'_k + D^2 a'_(k-1)) with y_j D = j D^2.
        let mut a = [0i128; BUILD_TERMS];
        a[0] = 1 << BUILD_FRAC_BITS;
        let mut k = 0;
        while k + 1 < BUILD_TERMS {
            let previous = if k == 0 { 0 } else { a[k - 1] };
            let sum = j as i128 * a[k] + previous; // |sum| < 251 * 2^118 < 2^126
            a[k + 1] = -mul_shr_signed(sum, STEP_SQUARED_127, 127) / (k as i128 + 1);
            k += 1;
        }
        // The runtime coefficients, and at u = 1 the whole step's integral / D and e^(-y_j D - D^2/2).
        let mut coeffs_q62 = [0i64; SERIES_TERMS];
        let mut integral_118: i128 = 0;
        let mut growth_118: i128 = 0;
        k = 0;
        while k < BUILD_TERMS {
            let b = a[k] / (k as i128 + 1);
            if k < SERIES_TERMS {
                coeffs_q62[k] =
                    ((b + (1 << (BUILD_FRAC_BITS - 63))) >> (BUILD_FRAC_BITS - 62)) as i64;
            }
            integral_118 += b;
            growth_118 += a[k];
            k += 1;
        }
        let density_step_127 = shr_wide(mul_wide(density_127, STEP_127), 127);
        table[j] = TailNode {
            tail_q64: round_127_to_64(tail_127),
            density_step_q64: round_127_to_64(density_step_127),
            coeffs_q62,
        };
        // Step to the next node: Q(y_(j+1)) = Q(y_j) - n(y_j) D * integral / D, n(y_(j+1)) = n(y_j) e^(-y_j D - D^2/2).
        tail_127 -= shr_wide(
            mul_wide(density_step_127, integral_118 as u128),
            BUILD_FRAC_BITS,
        );
        density_127 = shr_wide(mul_wide(density_127, growth_118 as u128), BUILD_FRAC_BITS);
        j += 1;
    }
    table
}

/// `Q(y) = 1 - N(y)` at scale 2^64 for `y` in raw units (scale 10^18), `0 <= y < 9 * 10^18`. Non-increasing in `y`.
#[inline]
fn upper_tail_q64(y: u64) -> u64 {
    debug_assert!((y as i128) < NORMAL_CDF_SATURATION);
    let j = (y >> GRID_SHIFT_RAW) as usize;
    // u = (y - y_j) / D at scale 2^63: the offset's 55 bits, shifted up to bit 62.
    let u = ((y << (64 - GRID_SHIFT_RAW)) >> 1) as i64;
    let node = &TAIL_TABLE[j];
    let next_tail_q64 = TAIL_TABLE[j + 1].tail_q64;
    // P(u) = sum b_k u^k at scale 2^62, in [0.72, 1]; the partial sums stay within (-1, 1], so every product of u and
    // p is a 64-by-64-bit one.
    let coeffs = &node.coeffs_q62;
    let mut p = coeffs[SERIES_TERMS - 1];
    for &c in coeffs[..SERIES_TERMS - 1].iter().rev() {
        p = c + ((u as i128 * p as i128) >> 63) as i64;
    }
    // u * P(u): the integral / D at scale 2^62, in [0, 1).
    let integral_q62 = ((u as i128 * p as i128) >> 63) as u64;
    let drop_q64 = ((node.density_step_q64 as u128 * integral_q62 as u128) >> 62) as u64;
    node.tail_q64.saturating_sub(drop_q64).max(next_tail_q64)
}

/// The standard normal cumulative distribution function `N(x)`, with `x` and the result at scale 10^18.
///
/// **Error bound.** `|normal_cdf_fixed(x) - N(x / 10^18) * 10^18| <= 0.65` raw units: correctly rounded unless the
/// exact value lies within 0.15 raw units of a rounding tie, never more than one raw unit (`10^-18`) off.
///
/// **Properties.** Non-decreasing in `x`; `N(-x) = 10^18 - N(x)` exactly; `N(0) = 5 * 10^17`; exactly 0 for
/// `x <= -9 * 10^18` and exactly `10^18` for `x >= 9 * 10^18` ([`NORMAL_CDF_SATURATION`]). Every `i128` is a valid
/// input; the function never fails (the `NumResult` is for uniformity with the other functions). Method and proofs in
/// the module doc.
pub fn normal_cdf_fixed(x: i128) -> NumResult<i128> {
    if x <= -NORMAL_CDF_SATURATION {
        return Ok(0);
    }
    if x >= NORMAL_CDF_SATURATION {
        return Ok(ONE);
    }
    let tail_q64 = upper_tail_q64(x.unsigned_abs() as u64);
    // Round Q * 10^18 / 2^64 to nearest: Q <= 2^63, so the product is below 2^123.
    let tail = ((tail_q64 as u128 * ONE as u128 + (1 << 63)) >> 64) as i128;
    Ok(if x < 0 { tail } else { ONE - tail })
}

// -------------------------------------------------------------------------------------------------------------------
// ln and exp with 64 fractional bits
// -------------------------------------------------------------------------------------------------------------------

/// `floor(ln 2 * 2^120)`.
const LN2_Q120: i128 = (LN2_128 >> 8) as i128;
/// `floor(ln(10^18) * 2^64)`.
const LN_1E18_Q64: i128 = LN_1E18_120 >> 56;
/// `floor(2^32 / ln 2)`, for the first estimate of `floor(y / ln 2)`.
const INV_LN2_Q32: i128 = floor_pow2_div(32 + 127, LN2_128 >> 1) as i128;

/// Terms of `ln(1 + t) / t = sum (-t)^n / (n + 1)`, `|t| <= 2^-7`: the first omitted term of `ln(1 + t)` is below
/// `2^-80`.
const LOG1P_TERMS: usize = 10;
/// `(-1)^n round(2^62 / (n + 1))`.
const LOG1P_COEFFS_Q62: [i64; LOG1P_TERMS] = {
    let mut c = [0i64; LOG1P_TERMS];
    let mut n = 0;
    while n < LOG1P_TERMS {
        let magnitude = ((1i128 << 62) + (n as i128 + 1) / 2) / (n as i128 + 1);
        c[n] = if n % 2 == 0 { magnitude } else { -magnitude } as i64;
        n += 1;
    }
    c
};

/// One interval `[1 + i/64, 1 + (i+1)/64)` of the mantissa for [`ln_q64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LnEntry {
    /// `r_i = round(2^64 / c_i)`, `c_i = 1 + (2i + 1)/128` the interval's midpoint, so `m r_i / 2^64` is within
    /// `2^-7` of 1 on the interval.
    reciprocal: u64,
    /// `ln(2^64 / r_i)` at scale 2^64, rounded to nearest.
    ln_inverse_q64: u64,
}

/// `floor(num * 2^bits / den)` by binary long division, for `num < den < 2^126` and a quotient below 2^128.
const fn floor_frac_div(num: u128, den: u128, bits: u32) -> u128 {
    let mut remainder = num;
    let mut quotient: u128 = 0;
    let mut i = 0;
    while i < bits {
        remainder <<= 1;
        quotient <<= 1;
        if remainder >= den {
            remainder -= den;
            quotient |= 1;
        }
        i += 1;
    }
    quotient
}

/// The table of [`ln_q64`], built at compile time: `ln q = 2 atanh((q - 1)/(q + 1))` at scale 2^124 by its series
/// (`q = 2^64 / r_i` in `(1, 2)`, so `|s| < 1/3` and 40 terms are far more than enough).
const LN_TABLE: [LnEntry; 64] = {
    let mut table = [LnEntry {
        reciprocal: 0,
        ln_inverse_q64: 0,
    }; 64];
    let mut i = 0;
    while i < 64 {
        let denominator = 129 + 2 * i as u128; // c_i = denominator / 128
        let reciprocal = ((1u128 << 71) + denominator / 2) / denominator; // < 2^64
        let two64 = 1u128 << 64;
        let s = floor_frac_div(two64 - reciprocal, two64 + reciprocal, 124);
        let s2 = shr_wide(mul_wide(s, s), 124);
        let mut power = s; // s^(2k+1), scale 2^124
        let mut sum: u128 = 0;
        let mut k = 0;
        while k < 40 {
            sum += power / (2 * k as u128 + 1);
            power = shr_wide(mul_wide(power, s2), 124);
            k += 1;
        }
        table[i] = LnEntry {
            reciprocal: reciprocal as u64,
            // 2 atanh(s) at scale 2^124, rounded to scale 2^64.
            ln_inverse_q64: ((2 * sum + (1 << 59)) >> 60) as u64,
        };
        i += 1;
    }
    table
};

/// `ln x` for an integer `x >= 1` (a raw value, not divided by its scale), at scale 2^64.
///
/// `x = m 2^e` with the mantissa `m` in `[1, 2)` cut to 64 bits (a relative error below `2^-63`); `m` lies in one
/// of 64 intervals with midpoint `c_i`, and `ln m = ln(2^64 / r_i) + ln(1 + t)` with `t = m r_i / 2^64 - 1`,
/// `|t| <= 2^-7`, by a 10-term polynomial with 64-bit products. Error below 5 units of 2^-64 (`2.7 * 10^-19`):
/// 2 from the mantissa's cut, half a unit from the table, 1 from `t`, 1 from the polynomial, 1 from `e ln 2`.
#[inline]
fn ln_q64(x: u128) -> i128 {
    debug_assert!(x >= 1);
    let e = 127 - x.leading_zeros(); // x in [2^e, 2^(e+1))
    let m = if e >= 63 {
        (x >> (e - 63)) as u64
    } else {
        (x << (63 - e)) as u64
    };
    let entry = &LN_TABLE[((m >> 57) & 63) as usize];
    // m r_i at scale 2^127, then t at scale 2^64.
    let t = (((m as u128 * entry.reciprocal as u128) >> 63) as i128 - (1i128 << 64)) as i64; // |t| < 2^57
    let mut p = LOG1P_COEFFS_Q62[LOG1P_TERMS - 1];
    for &c in LOG1P_COEFFS_Q62[..LOG1P_TERMS - 1].iter().rev() {
        p = c + ((t as i128 * p as i128) >> 64) as i64; // |p| < 2^63
    }
    let log1p = (t as i128 * p as i128) >> 62;
    ((e as i128 * LN2_Q120) >> 56) + entry.ln_inverse_q64 as i128 + log1p
}

/// Terms of `e^p`, `0 <= p < 2^-6`: the first omitted term is below `2^-72`.
const EXP_TERMS: usize = 9;
/// `floor(2^63 / n!)`.
const EXP_COEFFS_Q63: [u64; EXP_TERMS] = {
    let mut c = [0u64; EXP_TERMS];
    let mut factorial: u64 = 1;
    let mut n = 0;
    while n < EXP_TERMS {
        if n > 0 {
            factorial *= n as u64;
        }
        c[n] = (1u64 << 63) / factorial;
        n += 1;
    }
    c
};
/// `e^(j/64)` at scale 2^63, rounded to nearest, for `j = 0 ..= 44` (`64 ln 2 = 44.36`). Built at compile time as
/// powers of `e^(1/64)`, itself a Taylor series, at scale 2^124.
const EXP_TABLE_Q63: [u64; 45] = {
    let mut term: u128 = 1 << 124;
    let mut base: u128 = 0; // e^(1/64) at scale 2^124
    let mut n = 1;
    while term != 0 {
        base += term;
        term /= 64 * n;
        n += 1;
    }
    let mut table = [0u64; 45];
    let mut power: u128 = 1 << 124;
    let mut j = 0;
    while j < 45 {
        table[j] = ((power + (1 << 60)) >> 61) as u64;
        power = shr_wide(mul_wide(power, base), 124);
        j += 1;
    }
    table
};

/// `floor(e^y)` for `y` at scale 2^64, or `None` when that is `2^127` or more.
///
/// `y = k ln 2 + r` with `r` in `[0, ln 2)`, `r = j/64 + p` with `p` in `[0, 1/64)`, so
/// `e^y = 2^k e^(j/64) e^p` with `e^(j/64)` from a table and `e^p` by a 9-term polynomial with 64-bit products.
/// Relative error below `2^-61` (`4.4 * 10^-19`) before the final floor.
#[inline]
fn exp_q64_floor(y: i128) -> Option<u128> {
    debug_assert!(y.unsigned_abs() < 1 << 80);
    // k with M(k) <= y < M(k + 1), M(k) = floor(k ln 2 * 2^64) (non-decreasing in k): first an estimate within
    // one, then corrected. r = y - M(k) is in [0, 2^64 ln 2 + 1).
    let multiple = |k: i128| (k * LN2_Q120) >> 56;
    let mut k = ((y >> 32) * INV_LN2_Q32) >> 64;
    let mut base = multiple(k);
    if y < base {
        k -= 1;
        base = multiple(k);
    } else if y >= multiple(k + 1) {
        k += 1;
        base = multiple(k);
    }
    let r = y - base;
    if k >= 127 {
        return None;
    }
    let shift = 126 - k; // the mantissa below is at scale 2^126
    if shift >= 128 {
        return Some(0);
    }
    let r = r as u64; // in [0, 2^64 ln 2 + 1), so j <= 44
    let j = (r >> 58) as usize;
    let p_in = r & ((1 << 58) - 1);
    let mut p = EXP_COEFFS_Q63[EXP_TERMS - 1];
    for &c in EXP_COEFFS_Q63[..EXP_TERMS - 1].iter().rev() {
        p = c + ((p_in as u128 * p as u128) >> 64) as u64; // p < e^(1/64) * 2^63 < 2^64
    }
    let mantissa = EXP_TABLE_Q63[j] as u128 * p as u128; // e^r at scale 2^126, below 2^127
    Some(mantissa >> shift)
}

// -------------------------------------------------------------------------------------------------------------------
// Pricing
// -------------------------------------------------------------------------------------------------------------------

/// Call or put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionSide {
    /// The right to buy at the strike.
    Call,
    /// The right to sell at the strike.
    Put,
}

/// The inputs of one European option, every one at scale 10^18 (raw `10^18` is 1.0). Checked by each pricing call
/// against the limits in the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EuropeanInputs {
    /// `S`: the spot price in USD per whole token (Black-76: the forward for the option's expiry). > 0.
    pub spot: i128,
    /// `K`: the strike in USD per whole token. > 0.
    pub strike: i128,
    /// The volatility per square root of a year (0.2 is 20 % a year). >= 0.
    pub vol: i128,
    /// `T`: time to expiry in years (the caller chooses the day count; one second of a 365-day year is
    /// `31_709_791_983` raw). >= 0.
    pub years: i128,
    /// `r`: the risk-free rate per year, continuously compounded; negative allowed.
    pub rate: i128,
    /// `q`: the underlying's yield per year, continuously compounded (a staking yield, a funding carry, the foreign
    /// rate of a currency); negative allowed.
    pub carry_yield: i128,
}

impl EuropeanInputs {
    /// Black-76 inputs: the underlying is the forward (or futures) price `forward` for the option's expiry, in USD
    /// per whole token, discounted at `rate`. It is Black-Scholes with `S = F` and `q = r`, since then
    /// `S e^((r-q)T) = F` and `S e^(-qT) = F e^(-rT)`; the delta is then per unit of the forward.
    pub const fn black76(forward: i128, strike: i128, vol: i128, years: i128, rate: i128) -> Self {
        EuropeanInputs {
            spot: forward,
            strike,
            vol,
            years,
            rate,
            carry_yield: rate,
        }
    }
}

/// Where `d1` and `d2` stand.
#[derive(Clone, Copy, Debug)]
enum Spread {
    /// `d1`, and `d2 = d1 - s`, at scale 10^18.
    Finite { d1: i128, d2: i128 },
    /// `s` is 0, or `|ln(F/K)| >= 2^20 s`: `d1` and `d2` are both `+inf` (sign 1), both `-inf` (sign -1), or `s = 0`
    /// at `F = K` (sign 0).
    Degenerate { sign: i8 },
}

/// Everything a price or delta needs, at scale 10^18.
#[derive(Clone, Copy, Debug)]
struct Prepared {
    /// `qT` at scale 2^64 (the delta needs `e^(-qT)`).
    yield_time_q64: i128,
    /// `S e^(-qT)`.
    spot_leg: i128,
    /// `K e^(-rT)`.
    strike_leg: i128,
    spread: Spread,
}

const fn domain(op: &'static str) -> NumError {
    NumError::Domain { op }
}

fn check_inputs(inputs: &EuropeanInputs) -> NumResult<()> {
    let EuropeanInputs {
        spot,
        strike,
        vol,
        years,
        rate,
        carry_yield,
    } = *inputs;
    if spot <= 0 || spot > OPTION_PRICE_MAX {
        return Err(domain("european option: spot must be > 0 and <= 10^12 USD"));
    }
    if strike <= 0 || strike > OPTION_PRICE_MAX {
        return Err(domain(
            "european option: strike must be > 0 and <= 10^12 USD",
        ));
    }
    if !(0..=OPTION_VOL_MAX).contains(&vol) {
        return Err(domain("european option: vol must be in [0, 100]"));
    }
    if !(0..=OPTION_YEARS_MAX).contains(&years) {
        return Err(domain("european option: years must be in [0, 100]"));
    }
    if !(-OPTION_RATE_ABS_MAX..=OPTION_RATE_ABS_MAX).contains(&rate) {
        return Err(domain("european option: rate must be in [-10, 10]"));
    }
    if !(-OPTION_RATE_ABS_MAX..=OPTION_RATE_ABS_MAX).contains(&carry_yield) {
        return Err(domain("european option: carry_yield must be in [-10, 10]"));
    }
    Ok(())
}

/// `floor(v * 2^64 / 10^18)`: a value at scale 10^18 at scale 2^64 (`10^18 / 2^64 = 5^18 / 2^46`), for
/// `|v| < 2^80`.
#[inline]
fn decimal_to_q64(v: i128) -> i128 {
    let n = v << 46;
    let q = n / FIVE_POW_18;
    // Truncation rounded a negative quotient up; floor steps down.
    if n < 0 && q * FIVE_POW_18 != n {
        q - 1
    } else {
        q
    }
}

/// `floor(v * 10^18 / 2^64)`: a value at scale 2^64 at scale 10^18, for `|v| < 2^85`.
#[inline]
fn q64_to_decimal(v: i128) -> i128 {
    (v * FIVE_POW_18) >> 46
}

const FIVE_POW_18: i128 = 3_814_697_265_625;
const _: () = assert!(FIVE_POW_18 << 18 == ONE);

/// `x e^(-exponent)` for `x >= 1` raw with `ln_x = ln x` and `exponent` at scale 2^64, as `floor(e^(ln x -
/// exponent))`, so that its error is relative to the result; exactly `x` when the exponent is 0.
#[inline]
fn discounted_leg(x: i128, ln_x: i128, exponent: i128, op: &'static str) -> NumResult<i128> {
    if exponent == 0 {
        return Ok(x);
    }
    exp_q64_floor(ln_x - exponent)
        .and_then(|v| i128::try_from(v).ok())
        .ok_or(NumError::Overflow { op })
}

fn prepare(inputs: &EuropeanInputs) -> NumResult<Prepared> {
    check_inputs(inputs)?;
    let EuropeanInputs {
        spot,
        strike,
        vol,
        years,
        rate,
        carry_yield,
    } = *inputs;
    // rT and qT at scale 10^18, rounded down; |r|, |q| <= 10 and T <= 100, so the products are within 1000.
    let rate_time = mul_div(rate, years, ONE, Rounding::Floor)?;
    let yield_time = mul_div(carry_yield, years, ONE, Rounding::Floor)?;
    if rate_time.abs() > OPTION_EXPONENT_ABS_MAX || yield_time.abs() > OPTION_EXPONENT_ABS_MAX {
        return Err(domain(
            "european option: |rate * years| and |carry_yield * years| must be <= 40",
        ));
    }
    let (rate_time_q64, yield_time_q64) = (decimal_to_q64(rate_time), decimal_to_q64(yield_time));
    // ln of the raw integers (the scales cancel in ln(S/K), and e^(ln S_raw - qT) is the raw leg), within [0, 70] at
    // scale 2^64.
    let (ln_spot, ln_strike) = (ln_q64(spot as u128), ln_q64(strike as u128));
    let spot_leg = discounted_leg(
        spot,
        ln_spot,
        yield_time_q64,
        "european option: spot * e^(-qT)",
    )?;
    let strike_leg = discounted_leg(
        strike,
        ln_strike,
        rate_time_q64,
        "european option: strike * e^(-rT)",
    )?;
    // ln(F/K) = ln(S e^(-qT)) - ln(K e^(-rT)) = ln S - ln K + (r - q)T, at scale 10^18.
    let log_moneyness = q64_to_decimal((ln_spot - yield_time_q64) - (ln_strike - rate_time_q64));
    // s = vol sqrt(T) <= 100 * 10 = 1000. T <= 10^20 raw, so T * 10^18 fits u128.
    let sqrt_years = sqrt_u128_floor(years as u128 * ONE as u128) as i128;
    let total_std_dev = mul_div(vol, sqrt_years, ONE, Rounding::Floor)?;
    let spread = if total_std_dev == 0
        || log_moneyness.unsigned_abs() >> 20 >= total_std_dev.unsigned_abs()
    {
        // |ln(F/K) / s| >= 2^20 while s/2 <= 500: both d are beyond +-9 on the same side.
        Spread::Degenerate {
            sign: log_moneyness.signum() as i8,
        }
    } else {
        // |z| < 2^20, so z fits; the product needs 256 bits only for |ln(F/K)| above 170.
        let z = mul_div(log_moneyness, ONE, total_std_dev, Rounding::Floor)?;
        let d1 = z + total_std_dev / 2;
        Spread::Finite {
            d1,
            d2: d1 - total_std_dev,
        }
    };
    Ok(Prepared {
        yield_time_q64,
        spot_leg,
        strike_leg,
        spread,
    })
}

/// `floor(value * q / 2^64)` for `0 <= value < 2^127`, exactly: `value = hi 2^64 + lo`.
#[inline]
fn mul_q64_floor(value: u128, q: u64) -> u128 {
    let (hi, lo) = (value >> 64, value & u64::MAX as u128);
    hi * q as u128 + ((lo * q as u128) >> 64)
}

/// `leg * N(d)`, rounded down (to within the CDF's bound), for `leg >= 0`. Uses the tail at scale 2^64, not the
/// rounded `N`.
#[inline]
fn leg_times_cdf(leg: i128, d: i128) -> i128 {
    if d <= -NORMAL_CDF_SATURATION {
        return 0;
    }
    if d >= NORMAL_CDF_SATURATION {
        return leg;
    }
    let part = mul_q64_floor(leg as u128, upper_tail_q64(d.unsigned_abs() as u64)) as i128;
    if d < 0 {
        part
    } else {
        leg - part
    }
}

/// The price of a European `side` option, in USD per whole token at scale 10^18 (formulas, rounding, edge cases and
/// the error bound in the module doc). Always within `[0, S e^(-qT)]` for a call and `[0, K e^(-rT)]` for a put; in
/// the accuracy domain within `2 * 10^-17 * max(S e^(-qT), K e^(-rT)) + 4 * 10^-18` of the exact price
/// ([`price_error_bound_ceil`]).
///
/// Errors: [`NumError::Domain`] when an input is outside its limit (spot or strike `<= 0` or above 10^12, negative
/// `vol` or `years`, ...; the error names the input and the rule), [`NumError::Overflow`] when a leg `S e^(-qT)` or
/// `K e^(-rT)` does not fit `i128`.
pub fn european_price(side: OptionSide, inputs: &EuropeanInputs) -> NumResult<i128> {
    let prepared = prepare(inputs)?;
    Ok(price_of(side, &prepared))
}

fn price_of(side: OptionSide, prepared: &Prepared) -> i128 {
    let Prepared {
        spot_leg,
        strike_leg,
        spread,
        ..
    } = *prepared;
    let (upper, lower) = match side {
        OptionSide::Call => (spot_leg, (spot_leg - strike_leg).max(0)),
        OptionSide::Put => (strike_leg, (strike_leg - spot_leg).max(0)),
    };
    let price = match spread {
        // The discounted intrinsic value of the forward.
        Spread::Degenerate { .. } => lower,
        Spread::Finite { d1, d2 } => match side {
            OptionSide::Call => leg_times_cdf(spot_leg, d1) - leg_times_cdf(strike_leg, d2),
            OptionSide::Put => leg_times_cdf(strike_leg, -d2) - leg_times_cdf(spot_leg, -d1),
        },
    };
    price.clamp(lower, upper)
}

/// The delta of a European `side` option, `dprice / dS`, at scale 10^18: `e^(-qT) N(d1)` for a call (in
/// `[0, e^(-qT)]`), `-e^(-qT) N(-d1)` for a put (in `[-e^(-qT), 0]`). Per unit of the spot (of the forward for
/// [`EuropeanInputs::black76`]). Errors as [`european_price`].
///
/// Rounding: `e^(-qT) N(d1)` is rounded down (a put's delta toward zero), to within the CDF's bound. `d1` is only as
/// good as `ln(F/K) / s`, so in the accuracy domain the error is within
/// `10^-18 * e^(-qT) * (2 + vol) * (1 + 1/s) + 2 * 10^-18` (module doc).
pub fn european_delta(side: OptionSide, inputs: &EuropeanInputs) -> NumResult<i128> {
    let prepared = prepare(inputs)?;
    Ok(delta_of(side, &prepared))
}

fn delta_of(side: OptionSide, prepared: &Prepared) -> i128 {
    // e^(-qT) * 10^18 <= e^40 * 10^18 < 2^127: always Some.
    let carry_discount = if prepared.yield_time_q64 == 0 {
        ONE
    } else {
        exp_q64_floor(LN_1E18_Q64 - prepared.yield_time_q64).map_or(0, |v| v as i128)
    };
    match prepared.spread {
        Spread::Degenerate { sign } => {
            let call = match sign {
                1 => carry_discount,
                -1 => 0,
                _ => carry_discount / 2,
            };
            match side {
                OptionSide::Call => call,
                OptionSide::Put => call - carry_discount,
            }
        }
        Spread::Finite { d1, .. } => match side {
            OptionSide::Call => leg_times_cdf(carry_discount, d1),
            OptionSide::Put => -leg_times_cdf(carry_discount, -d1),
        },
    }
}

/// The error bound of [`european_price`] for these inputs, rounded up, at scale 10^18:
/// `PRICE_ERROR_PER_LEG * M / 10^18 + PRICE_ERROR_ABS` with `M = max(S e^(-qT), K e^(-rT))`. Valid in the accuracy
/// domain of the module doc. A caller that needs a price that is never below (or never above) the exact one adds
/// (or subtracts) it. Errors as [`european_price`].
pub fn price_error_bound_ceil(inputs: &EuropeanInputs) -> NumResult<i128> {
    let prepared = prepare(inputs)?;
    let larger_leg = prepared.spot_leg.max(prepared.strike_leg);
    let per_leg = mul_div(larger_leg, PRICE_ERROR_PER_LEG, ONE, Rounding::Ceil)?;
    per_leg
        .checked_add(PRICE_ERROR_ABS)
        .ok_or(NumError::Overflow {
            op: "price_error_bound_ceil",
        })
}
