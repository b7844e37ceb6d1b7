//! Deterministic integer `sqrt`, `exp` and `ln`.
//!
//! Every function here uses integer arithmetic only, so it returns the same bits on every platform, and none of them
//! panics on any input: out-of-range inputs return a [`NumError`].
//!
//! * [`sqrt_u128_floor`] and [`sqrt_fixed_floor`] are **exact**: they return the floor of the true square root.
//!   The fixed-point version squares the scale in with a 256-bit intermediate when the product does not fit in 128
//!   bits.
//! * [`exp_fixed`] and [`ln_fixed`] take and return numbers at scale 10^18 (raw `10^18` is 1.0). Internally they work
//!   in binary fixed point with 120 to 128 fractional bits (about 36 decimal digits), twice the precision of the
//!   output, and round to nearest once at the end:
//!   - `exp`: `x * log2(e)` is computed in binary (one 128-by-256-bit product) and split into an integer `k` and
//!     a fraction `f` in `[0, 1)`, so that `e^x = 2^k * e^r` with `r = f * ln 2` in `[0, ln 2)`. `e^r` is a
//!     31-term Taylor polynomial evaluated by Horner's rule, and the shift by `2^k` is folded into the final
//!     rounding.
//!     The result is within half a raw unit plus a relative `10^-36` of the true value: it is the correctly rounded
//!     result unless that lies very close to a rounding tie, and at most one raw unit off for every result below
//!     `5 * 10^35` raw.
//!   - `ln`: `x = m * 2^j` with `m` in `[sqrt(1/2), sqrt(2))`, `ln m = 2 atanh(s)` with `s = (m-1)/(m+1)` (so
//!     `|s| < 0.172`) by a 25-term odd series in `s`, plus `j * ln 2`, minus `ln(10^18)`. The result is within
//!     `0.5 + 10^-17` raw units of the true value, that is, correctly rounded unless the exact value lies within
//!     `10^-17` raw units of a rounding tie.
//!
//! The binary constants (ln 2, log2 e, ln 10^18, sqrt 2) are checked bit for bit against a big-integer reference in
//! the tests, and the error bounds are checked there against an independent 70-digit big-integer evaluation.

use crate::{NumError, NumResult};
use ruint::aliases::U256;

/// Raw units of 1.0 at scale 10^18.
const ONE_18: u128 = 1_000_000_000_000_000_000;
/// `floor(ln(2) * 2^128)`.
pub(crate) const LN2_128: u128 = 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af;
/// `log2(e) * 2^121 / 10^18 = X_TO_LOG2_INT + X_TO_LOG2_FRAC / 2^128` (rounded down): converts a raw input at scale
/// 10^18 to `x * log2(e)` with 121 fractional bits.
const X_TO_LOG2_INT: u128 = 0x3539_de91_cc25_e6c9;
const X_TO_LOG2_FRAC: u128 = 0xe4bd_1af4_d756_caa3_9709_8491_983b_b057;
/// `floor(ln(10^18) * 2^120)`.
pub(crate) const LN_1E18_120: i128 = 0x2972_4fe6_57ff_7066_71e8_6c3c_3ccb_5adb;
/// `floor(sqrt(2) * 2^126)`.
const SQRT2_126: u128 = 0x5a82_7999_fcef_3242_2cbe_c4d9_baa5_5f4f;

/// Above this raw input, `e^x * 10^18` exceeds `i128::MAX` (the threshold is 46.58316...).
const EXP_MAX_INPUT: i128 = 47 * ONE_18 as i128;
/// Below this raw input, `e^x * 10^18 < 0.03`, which rounds to 0.
const EXP_MIN_INPUT: i128 = -45 * ONE_18 as i128;

/// Number of Taylor terms of `e^r`, `r` in `[0, ln 2)`: the first omitted term is below `2^-129`.
const EXP_TERMS: usize = 31;
/// `floor(2^127 / n!)` for `n < EXP_TERMS`.
const EXP_COEFFS: [u128; EXP_TERMS] = {
    let mut coeffs = [0u128; EXP_TERMS];
    let mut factorial: u128 = 1;
    let mut n = 0;
    while n < EXP_TERMS {
        if n > 0 {
            factorial *= n as u128; // 30! < 2^108
        }
        coeffs[n] = (1u128 << 127) / factorial;
        n += 1;
    }
    coeffs
};

/// Number of terms of `atanh(s)/s = sum s^(2j) / (2j+1)` for `|s| < 0.172`: the first omitted term is below
/// `2^-132`.
const ATANH_TERMS: usize = 25;
/// `floor(2^127 / (2j + 1))` for `j < ATANH_TERMS`.
const ATANH_COEFFS: [u128; ATANH_TERMS] = {
    let mut coeffs = [0u128; ATANH_TERMS];
    let mut j = 0;
    while j < ATANH_TERMS {
        coeffs[j] = (1u128 << 127) / (2 * j as u128 + 1);
        j += 1;
    }
    coeffs
};

/// Floor of the square root of `n`, exactly (`r*r <= n < (r+1)*(r+1)`), in about half the time of the standard
/// library's `u128::isqrt` (it is on the size-premium hot path).
///
/// Method: a reciprocal square root of the top 64 bits from a table and two multiply-only Newton steps (about 30
/// bits), one integer Newton step for the root itself, and a final correction by squaring. The estimates only decide
/// how fast it gets there, never the result: one integer Newton step from any positive start lands at or above the
/// floor of the root (`floor((r + floor(n / r)) / 2) >= floor(sqrt(n))`), and the loop then steps down to the first
/// `r` with `r * r <= n`, which is the floor of the root; with the estimate it runs zero or one time.
#[inline]
pub fn sqrt_u128_floor(n: u128) -> u128 {
    /// `RSQRT[i]` = 2^63 / sqrt((i + 1/2) / 256): the reciprocal root of the middle of the interval of `t` =
    /// top 64 bits / 2^64 in [1/4, 1) whose top byte is `i` (only 64..256 are used).
    const RSQRT: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut i = 64;
        while i < 256 {
            t[i] = ((1u128 << 126) / (2 * i as u128 + 1) * 512).isqrt() as u64;
            i += 1;
        }
        t
    };
    if n < 1 << 64 {
        return (n as u64).isqrt() as u128;
    }
    // Normalise: m = n * 4^k in [2^126, 2^128), so floor(sqrt(n)) = floor(sqrt(m)) >> k.
    let shift = n.leading_zeros() & !1;
    let m = n << shift;
    let top = (m >> 64) as u64;
    // y ~ 2^63 / sqrt(top / 2^64), two steps of y' = y * (3 - t * y^2) / 2 in fixed point.
    let mut y = RSQRT[(top >> 56) as usize];
    for _ in 0..2 {
        let y2 = ((y as u128 * y as u128) >> 64) as u64;
        let ty2 = ((top as u128 * y2 as u128) >> 64) as u64;
        let f = (3u64 << 62).wrapping_sub(ty2);
        y = ((y as u128 * f as u128) >> 63) as u64;
    }
    // sqrt(m) ~ top * y / 2^63, clamped to the root's range [2^63, 2^64).
    let r0 = ((top as u128 * y as u128) >> 63).clamp(1 << 63, (1 << 64) - 1);
    let mut r = ((r0 + m / r0) >> 1).min((1 << 64) - 1);
    while r * r > m {
        r -= 1;
    }
    r >> (shift / 2)
}

/// Square root of a non-negative fixed-point number with `decimals` decimal places (raw = value * 10^decimals),
/// rounded down: the result is exactly `floor(sqrt(x * 10^decimals))`, computed in 256 bits when the product does not
/// fit in 128.
///
/// Errors: [`NumError::Domain`] for `x < 0` or `decimals > 38`. Every other input succeeds (the result is below
/// `1.4 * 10^38`).
pub fn sqrt_fixed_floor(x: i128, decimals: u32) -> NumResult<i128> {
    if x < 0 {
        return Err(NumError::Domain { op: "sqrt" });
    }
    if decimals > 38 {
        return Err(NumError::Domain {
            op: "sqrt (decimals)",
        });
    }
    let scale = 10u128.pow(decimals); // <= 10^38 < 2^127
    let x = x.unsigned_abs();
    let root = match x.checked_mul(scale) {
        Some(n) => n.isqrt(),
        None => isqrt_u256(U256::from(x) * U256::from(scale)),
    };
    i128::try_from(root).map_err(|_| NumError::Overflow { op: "sqrt" })
}

/// `floor(sqrt(n))` for `n >= 2^128` (so the root is in `[2^64, 2^128)`).
fn isqrt_u256(n: U256) -> u128 {
    // An over-estimate from the top 126 or 127 bits: with `n = top * 2^shift + low` (`shift` even, `low < 2^shift`),
    // `((isqrt(top) + 1) * 2^(shift/2))^2 >= (top + 1) * 2^shift > n`. It is within a relative 2^-62 of the root, so
    // Newton's iteration from above (which decreases monotonically to the floor) needs two or three steps.
    let bits = n.bit_len();
    let shift = (bits.saturating_sub(127) + 1) & !1;
    let top_limbs = (n >> shift).into_limbs();
    let top = (u128::from(top_limbs[1]) << 64) | u128::from(top_limbs[0]);
    let mut root = U256::from(top.isqrt() + 1) << (shift / 2);
    loop {
        let next = (root + n / root) >> 1;
        if next >= root {
            break;
        }
        root = next;
    }
    let limbs = root.into_limbs();
    (u128::from(limbs[1]) << 64) | u128::from(limbs[0])
}

/// e^x with x and result at scale 10^18 (raw 10^18 == 1.0). Result rounded to nearest within the documented bound.
///
/// **Error bound.** With `E = e^(x/10^18) * 10^18` the exact result in raw units,
/// `|exp_fixed(x) - E| <= 0.5 + 10^-36 * E`. So the result is the correctly rounded one unless `E` lies within
/// `10^-36 * E` of a rounding tie, it is never more than one raw unit off while `E < 5 * 10^35`, and near the top
/// of the range (`E` about `1.7 * 10^38`) it is within 171 raw units. (The internal error is below `2 * 10^-37`
/// relative: half a unit of 2^-121 in `x * log2(e)`, times ln 2, plus 7 units of 2^-127 in the Taylor polynomial;
/// the largest seen in testing is `1.3 * 10^-37`.)
///
/// **Range.** Inputs above about 46.5832 (`ln((2^127 - 1) / 10^18)`, raw `46_583_160_257_220_231_983`) return
/// `NumError::Overflow { op: "exp" }` because the result does not fit `i128` (within 171 raw units of `i128::MAX`
/// the decision follows the computed value). Inputs below about -42.14 underflow to 0, which is not an error; so do
/// all inputs down to `i128::MIN`.
pub fn exp_fixed(x: i128) -> NumResult<i128> {
    const OVERFLOW: NumError = NumError::Overflow { op: "exp" };
    if x > EXP_MAX_INPUT {
        return Err(OVERFLOW);
    }
    if x < EXP_MIN_INPUT {
        return Ok(0);
    }
    // |y| = |x| / 10^18 * log2(e) with 121 fractional bits, rounded to nearest: |x| * C with
    // C = log2(e) * 2^121 / 10^18 = C_INT + C_FRAC / 2^128. |x| <= 47 * 10^18 < 2^66, so |x| * C_INT < 68 * 2^121
    // < 2^128 and the rounded product adds less than |x| < 2^66 to it.
    let x_mag = x.unsigned_abs();
    let (frac_hi, frac_lo) = mul_wide(x_mag, X_TO_LOG2_FRAC);
    let y_mag = x_mag * X_TO_LOG2_INT + frac_hi + (frac_lo >> 127);
    const FRAC_MASK: u128 = (1u128 << 121) - 1;
    // Split y = k + f with k an integer and f in [0, 1).
    let (k, f_121) = if x >= 0 {
        ((y_mag >> 121) as i32, y_mag & FRAC_MASK)
    } else if y_mag & FRAC_MASK == 0 {
        (-((y_mag >> 121) as i32), 0)
    } else {
        (
            -((y_mag >> 121) as i32) - 1,
            (1u128 << 121) - (y_mag & FRAC_MASK),
        )
    };
    // r = f * ln 2 in [0, ln 2), 128 fractional bits.
    let r = mul_hi(f_121 << 7, LN2_128);
    // e^r in [1, 2), 127 fractional bits. Every step rounds down, so the value never exceeds e^r * 2^127 < 2^128.
    let mut p = EXP_COEFFS[EXP_TERMS - 1];
    for &c in EXP_COEFFS[..EXP_TERMS - 1].iter().rev() {
        p = c + mul_hi(p, r);
    }
    // e^x * 10^18 = p * 10^18 * 2^(k - 127); k is in [-65, 67], so the shift is in [60, 192].
    let (hi, lo) = mul_wide(p, ONE_18);
    let shift = (127 - k) as u32;
    let rounded = round_shr(hi, lo, shift).ok_or(OVERFLOW)?;
    i128::try_from(rounded).map_err(|_| OVERFLOW)
}

/// ln(x) with x and result at scale 10^18. NumError::Domain{op:"ln"} for x <= 0.
///
/// **Error bound.** With `L = ln(x / 10^18) * 10^18` the exact result in raw units,
/// `|ln_fixed(x) - L| <= 0.5 + 10^-17`: the result is the correctly rounded one unless `L` lies within `10^-17` raw
/// units of a rounding tie, and never more than one raw unit off. (The internal error is below `3.6 * 2^-120`, about
/// `2.7 * 10^-36`, in `ln(x / 10^18)`.) In particular `ln_fixed(10^18) == 0` exactly.
///
/// **Range.** Every positive `i128` succeeds: the result lies between `ln(10^-18) = -41.45` (raw
/// `-41_446_531_673_892_822_312`) and `ln(i128::MAX / 10^18) = 46.58`.
pub fn ln_fixed(x: i128) -> NumResult<i128> {
    if x <= 0 {
        return Err(NumError::Domain { op: "ln" });
    }
    // x is in [1, 2^127). j = floor(log2 x), at most 126; then choose j so that m = x / 2^j lies in
    // [sqrt(1/2), sqrt(2)).
    // x << (126 - j) is m * 2^126 for the first choice.
    let x = x.unsigned_abs();
    let mut j = 127 - x.leading_zeros();
    if x << (126 - j) > SQRT2_126 {
        j += 1;
    }
    let pow = 1u128 << j; // at most 2^127
    let negative = x < pow;
    let num = x.abs_diff(pow);
    let den = x + pow; // < 2^128
                       // |s| = |m - 1| / (m + 1) < 0.172, 128 fractional bits, rounded down.
    let s = div_frac(num, den);
    let z = mul_hi(s, s); // s^2 < 0.03, 128 fractional bits
                          // atanh(s) / s = sum z^i / (2i + 1), in [1, 1.011), 127 fractional bits.
    let mut p = ATANH_COEFFS[ATANH_TERMS - 1];
    for &c in ATANH_COEFFS[..ATANH_TERMS - 1].iter().rev() {
        p = c + mul_hi(p, z);
    }
    // |ln m| = 2 * s * p, with 127 fractional bits (< 0.35 * 2^127); reduced to 120 fractional bits.
    let ln_m = ((mul_hi(s, p) << 1) >> 7) as i128;
    // j * ln 2 with 120 fractional bits: LN2_128 = a * 2^8 + b, j * LN2_128 / 2^8 = j * a + j * b / 2^8.
    let (a, b) = ((LN2_128 >> 8) as i128, (LN2_128 & 0xff) as i128);
    let j = j as i128;
    let ln2_term = j * a + ((j * b) >> 8); // < 128 * 0.7 * 2^120 < 2^127
    let ln_x = if negative {
        ln2_term - ln_m
    } else {
        ln2_term + ln_m
    };
    let l = ln_x - LN_1E18_120; // |l| < 47 * 2^120
                                // Round |l| * 10^18 / 2^120 to nearest (ties away from zero).
    let (hi, lo) = mul_wide(l.unsigned_abs(), ONE_18);
    let magnitude = round_shr(hi, lo, 120).ok_or(NumError::Overflow { op: "ln" })?;
    let magnitude = i128::try_from(magnitude).map_err(|_| NumError::Overflow { op: "ln" })?;
    Ok(if l < 0 { -magnitude } else { magnitude })
}

/// The full 256-bit product `a * b` as `(high, low)` 128-bit halves. `const` so that [`crate::option`] can build its
/// tables at compile time.
#[inline]
pub(crate) const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Each partial product is below 2^128; `mid` is below 3 * 2^64, the high half below 2^128.
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let lo = ((mid & MASK) << 64) | (p00 & MASK);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// `floor(a * b / 2^128)`.
#[inline]
fn mul_hi(a: u128, b: u128) -> u128 {
    mul_wide(a, b).0
}

/// `floor(num * 2^128 / den)` for `num < den`.
#[inline]
fn div_frac(num: u128, den: u128) -> u128 {
    let quotient: U256 = (U256::from(num) << 128usize) / U256::from(den);
    let limbs = quotient.into_limbs();
    (u128::from(limbs[1]) << 64) | u128::from(limbs[0])
}

/// `(hi * 2^128 + lo) / 2^shift` rounded to nearest (ties up), for `1 <= shift <= 255` and `hi < 2^127`; `None`
/// when the result does not fit in `u128`.
#[inline]
fn round_shr(hi: u128, lo: u128, shift: u32) -> Option<u128> {
    if shift == 0 || shift > 255 {
        return None;
    }
    let (hi, lo) = if shift <= 128 {
        let (lo, carry) = lo.overflowing_add(1u128 << (shift - 1));
        (hi.checked_add(u128::from(carry))?, lo)
    } else {
        (hi.checked_add(1u128 << (shift - 129))?, lo)
    };
    if shift >= 128 {
        Some(hi >> (shift - 128))
    } else if hi >> shift != 0 {
        None
    } else {
        Some((hi << (128 - shift)) | (lo >> shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    // ---------------------------------------------------------------------------------------------------------------
    // Reference: plain big-integer arithmetic at scale 10^70, series run until the terms vanish. Slow, simple and
    // independent of the binary constants and polynomial lengths above.
    // ---------------------------------------------------------------------------------------------------------------

    const REF_DIGITS: u32 = 70;

    fn big(v: i128) -> BigInt {
        BigInt::from(v)
    }

    fn pow10(exp: u32) -> BigInt {
        BigInt::from(10u8).pow(exp)
    }

    /// The reference scale, 10^70.
    fn scale() -> &'static BigInt {
        static S: OnceLock<BigInt> = OnceLock::new();
        S.get_or_init(|| pow10(REF_DIGITS))
    }

    /// atanh(s / S) * S for |s| <= S / 3.
    fn ref_atanh(s: &BigInt) -> BigInt {
        let scale = scale();
        let s2 = s * s / scale;
        let mut term = s.clone(); // s^(2i+1) / S^(2i)
        let mut sum = BigInt::from(0);
        let mut i = 0u32;
        while term != BigInt::from(0) {
            sum += &term / BigInt::from(2 * i + 1);
            term = term * &s2 / scale;
            i += 1;
        }
        sum
    }

    /// ln(2) * S = 2 atanh(1/3) * S.
    fn ref_ln2() -> &'static BigInt {
        static LN2: OnceLock<BigInt> = OnceLock::new();
        LN2.get_or_init(|| 2 * ref_atanh(&(scale() / 3)))
    }

    /// ln(v) * S for an integer v >= 1.
    fn ref_ln_int(v: &BigInt) -> BigInt {
        let scale = scale();
        let e = v.bits() - 1; // v = m * 2^e, m in [1, 2)
        let m = (v * scale) >> e;
        let s = (&m - scale) * scale / (&m + scale); // in [0, S/3)
        BigInt::from(e) * ref_ln2() + 2 * ref_atanh(&s)
    }

    /// ln(x / 10^18) * S, i.e. the exact raw result times 10^52.
    fn ref_ln(x: i128) -> BigInt {
        static LN_1E18: OnceLock<BigInt> = OnceLock::new();
        let ln_1e18 = LN_1E18.get_or_init(|| ref_ln_int(&pow10(18)));
        ref_ln_int(&big(x)) - ln_1e18
    }

    /// e^(x / 10^18) * 10^18 * S, i.e. the exact raw result times 10^70.
    fn ref_exp(x: i128) -> BigInt {
        let scale = scale();
        let ln2 = ref_ln2();
        let xs = big(x) * pow10(REF_DIGITS - 18);
        let k = &xs / ln2; // truncated: |r| < ln 2
        let r = &xs - &k * ln2;
        let mut term = scale.clone();
        let mut sum = scale.clone();
        let mut n = 1u32;
        while term != BigInt::from(0) {
            term = term * &r / (scale * BigInt::from(n));
            sum += &term;
            n += 1;
        }
        let value = sum * pow10(18);
        let k = i64::try_from(k).unwrap();
        if k >= 0 {
            value << k
        } else {
            value >> (-k)
        }
    }

    /// `|got * unit - exact|`, with `exact` in raw units times `unit`.
    fn abs_err(got: i128, exact: &BigInt, unit: &BigInt) -> BigInt {
        let diff = big(got) * unit - exact;
        if diff < BigInt::from(0) {
            -diff
        } else {
            diff
        }
    }

    /// The documented exp bound, `0.5 + 10^-36 * E` raw units, times 10^70 (plus 10^20 for the reference's own
    /// rounding, which is below 10^-50 raw units).
    fn exp_bound(exact: &BigInt) -> BigInt {
        scale() / 2 + exact / pow10(36) + pow10(20)
    }

    /// Checks one `exp_fixed` result against the reference and the documented bound.
    fn check_exp(x: i128) -> Result<(), String> {
        let exact = ref_exp(x);
        let bound = exp_bound(&exact);
        match exp_fixed(x) {
            Ok(got) => {
                let err = abs_err(got, &exact, scale());
                if err > bound {
                    return Err(format!(
                        "exp({x}) = {got}, exact*10^70 = {exact}, err {err} > {bound}"
                    ));
                }
            }
            Err(e) => {
                // Only allowed when the exact result (less the bound) does not fit i128.
                if e != (NumError::Overflow { op: "exp" })
                    || &exact + &bound <= big(i128::MAX) * scale()
                {
                    return Err(format!("exp({x}) = {e:?}, exact*10^70 = {exact}"));
                }
            }
        }
        Ok(())
    }

    /// Checks one `ln_fixed` result against the reference and the documented bound `0.5 + 10^-17` raw units.
    fn check_ln(x: i128) -> Result<(), String> {
        let exact = ref_ln(x); // raw * 10^52
        let unit = pow10(REF_DIGITS - 18);
        let bound = &unit / 2 + pow10(REF_DIGITS - 18 - 17) + pow10(20);
        let got = ln_fixed(x).map_err(|e| format!("ln({x}) = {e:?}"))?;
        let err = abs_err(got, &exact, &unit);
        if err > bound {
            return Err(format!(
                "ln({x}) = {got}, exact*10^52 = {exact}, err {err} > {bound}"
            ));
        }
        Ok(())
    }

    /// `floor(c * 2^bits)` for a constant held at the reference scale.
    fn binary_floor(c: &BigInt, bits: u32) -> BigInt {
        (c << bits) / scale()
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The reference itself.
    // ---------------------------------------------------------------------------------------------------------------

    #[test]
    fn reference_matches_published_digits() {
        // 70 digits of ln 2 and e (OEIS A002162, A001113), truncated.
        let ln2 = "6931471805599453094172321214581765680755001343602552541206800094933936";
        let e = "27182818284590452353602874713526624977572470936999595749669676277240766";
        let ref_ln2 = ref_ln2().to_string();
        assert_eq!(&ref_ln2[..66], &ln2[..66]);
        let ref_e = (ref_exp(10i128.pow(18)) / pow10(18)).to_string();
        assert_eq!(&ref_e[..66], &e[..66]);
        // ln(10) = 2.302585092994045684017991454684364207601101488628772976033327900967...
        let ln10 = (ref_ln_int(&pow10(18)) / BigInt::from(18)).to_string();
        assert_eq!(
            &ln10[..60],
            "230258509299404568401799145468436420760110148862877297603332"
        );
    }

    #[test]
    fn binary_constants_are_exact() {
        let ln2 = ref_ln2();
        assert_eq!(binary_floor(ln2, 128), BigInt::from(LN2_128));
        // floor(log2(e) * 2^249 / 10^18), as the integer and fractional halves of a 128.128 fixed-point number.
        let x_to_log2 = (scale() << 249u32) / (ln2 * pow10(18));
        assert_eq!(
            x_to_log2,
            (BigInt::from(X_TO_LOG2_INT) << 128u32) + BigInt::from(X_TO_LOG2_FRAC)
        );
        let ln_1e18 = ref_ln_int(&pow10(18));
        assert_eq!(binary_floor(&ln_1e18, 120), BigInt::from(LN_1E18_120));
        let sqrt2 = (BigInt::from(2) << 252u32).sqrt();
        assert_eq!(sqrt2, BigInt::from(SQRT2_126));
    }

    #[test]
    fn polynomial_coefficients() {
        let mut factorial = BigInt::from(1);
        for (n, &c) in EXP_COEFFS.iter().enumerate() {
            if n > 0 {
                factorial *= n;
            }
            assert_eq!(BigInt::from(c), (BigInt::from(1) << 127u32) / &factorial);
        }
        for (j, &c) in ATANH_COEFFS.iter().enumerate() {
            assert_eq!(BigInt::from(c), (BigInt::from(1) << 127u32) / (2 * j + 1));
        }
    }

    #[test]
    fn wide_helpers() {
        let cases = [
            (0u128, 0u128),
            (1, 1),
            (u128::MAX, u128::MAX),
            (u128::MAX, 1),
            (LN2_128, X_TO_LOG2_FRAC),
            (1u128 << 127, 3),
            (0x1234_5678_9abc_def0_0fed_cba9_8765_4321, u128::MAX - 7),
        ];
        for (a, b) in cases {
            let (hi, lo) = mul_wide(a, b);
            let product = BigInt::from(a) * BigInt::from(b);
            assert_eq!((BigInt::from(hi) << 128u32) + BigInt::from(lo), product);
        }
        assert_eq!(div_frac(1, 3), u128::MAX / 3);
        assert_eq!(div_frac(0, 5), 0);
        assert_eq!(div_frac(u128::MAX - 1, u128::MAX), u128::MAX - 1);
        assert_eq!(round_shr(0, 3, 1), Some(2));
        assert_eq!(round_shr(0, 5, 2), Some(1));
        assert_eq!(round_shr(0, 6, 2), Some(2));
        assert_eq!(round_shr(1, 0, 1), Some(1u128 << 127));
        assert_eq!(round_shr(2, 0, 1), None);
        assert_eq!(round_shr(1, 1u128 << 127, 129), Some(1));
        assert_eq!(round_shr(1, 0, 129), Some(1));
        assert_eq!(round_shr(0, u128::MAX, 129), Some(0));
        assert_eq!(round_shr(1 << 126, 0, 255), Some(1));
        assert_eq!(round_shr((1 << 126) - 1, u128::MAX, 255), Some(0));
        assert_eq!(round_shr(3 << 125, 0, 255), Some(1));
        assert_eq!(round_shr(0, 0, 0), None);
        assert_eq!(round_shr(0, 0, 256), None);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // sqrt
    // ---------------------------------------------------------------------------------------------------------------

    fn assert_exact_root(x: u128) {
        let r = sqrt_u128_floor(x);
        let (x, r) = (BigInt::from(x), BigInt::from(r));
        assert!(&r * &r <= x, "sqrt({x}) = {r} too big");
        assert!((&r + 1) * (&r + 1) > x, "sqrt({x}) = {r} too small");
    }

    #[test]
    fn sqrt_u128_edge_cases() {
        let m = u64::MAX as u128;
        for x in [
            0,
            1,
            2,
            3,
            4,
            5,
            8,
            9,
            10,
            u128::MAX,
            u128::MAX - 1,
            m * m,
            m * m - 1,
            m * m + 1,
            (m - 1) * (m - 1),
            1u128 << 127,
            (1u128 << 64) - 1,
            1u128 << 64,
            1u128 << 126,
        ] {
            assert_exact_root(x);
        }
        assert_eq!(sqrt_u128_floor(0), 0);
        assert_eq!(sqrt_u128_floor(3), 1);
        assert_eq!(sqrt_u128_floor(4), 2);
        assert_eq!(sqrt_u128_floor(u128::MAX), m);
        assert_eq!(sqrt_u128_floor(m * m), m);
        assert_eq!(sqrt_u128_floor(m * m - 1), m - 1);
        // Squares and their neighbours in the top 2^20 roots.
        for r in (m - (1 << 20))..=m {
            if r % 997 == 0 || r > m - 64 {
                assert_eq!(sqrt_u128_floor(r * r), r);
                assert_eq!(sqrt_u128_floor(r * r - 1), r - 1);
                assert_eq!(sqrt_u128_floor(r * r + 2 * r), r);
            }
        }
    }

    #[test]
    fn sqrt_fixed_table() {
        assert_eq!(
            sqrt_fixed_floor(-1, 18),
            Err(NumError::Domain { op: "sqrt" })
        );
        assert_eq!(
            sqrt_fixed_floor(i128::MIN, 0),
            Err(NumError::Domain { op: "sqrt" })
        );
        assert!(matches!(
            sqrt_fixed_floor(4, 39),
            Err(NumError::Domain { .. })
        ));
        assert_eq!(sqrt_fixed_floor(0, 18), Ok(0));
        assert_eq!(sqrt_fixed_floor(0, 38), Ok(0));
        assert_eq!(
            sqrt_fixed_floor(4 * 10i128.pow(18), 18),
            Ok(2 * 10i128.pow(18))
        );
        assert_eq!(
            sqrt_fixed_floor(2 * 10i128.pow(18), 18),
            Ok(1_414_213_562_373_095_048)
        );
        assert_eq!(sqrt_fixed_floor(1, 18), Ok(1_000_000_000));
        assert_eq!(sqrt_fixed_floor(2, 0), Ok(1));
        // The largest input needs the 256-bit path: floor(sqrt((2^127 - 1) * 10^38)).
        let big_root = sqrt_fixed_floor(i128::MAX, 38).unwrap();
        let n = big(i128::MAX) * pow10(38);
        assert_eq!(big(big_root), n.sqrt());
    }

    fn check_sqrt_fixed(x: i128, decimals: u32) -> Result<(), String> {
        let got = sqrt_fixed_floor(x, decimals).map_err(|e| format!("{x} {decimals}: {e:?}"))?;
        let expected = (big(x) * pow10(decimals)).sqrt();
        if big(got) != expected {
            return Err(format!(
                "sqrt_fixed_floor({x}, {decimals}) = {got}, expected {expected}"
            ));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::proptest_config(20_000))]

        #[test]
        fn sqrt_u128_is_exact(x in prop_oneof![
            any::<u128>(),
            any::<u64>().prop_map(u128::from),
            any::<u64>().prop_map(|r| u128::from(r) * u128::from(r)),
            any::<u64>().prop_map(|r| (u128::from(r) * u128::from(r)).saturating_sub(1)),
            (0u128..1_000_000),
        ]) {
            let r = sqrt_u128_floor(x);
            let (xb, rb) = (BigInt::from(x), BigInt::from(r));
            prop_assert!(&rb * &rb <= xb && (&rb + 1) * (&rb + 1) > xb, "sqrt({}) = {}", x, r);
        }

        #[test]
        fn sqrt_fixed_matches_big_integer(x in prop_oneof![
            (0i128..=i128::MAX),
            any::<i64>().prop_map(|v| i128::from(v).abs()),
            (0i128..1_000_000),
            (0i128..1 << 63).prop_map(|r| r * r),
        ], decimals in prop_oneof![0u32..=38, Just(18u32), Just(38u32), Just(12u32)]) {
            if let Err(message) = check_sqrt_fixed(x, decimals) {
                return Err(TestCaseError::fail(message));
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // exp
    // ---------------------------------------------------------------------------------------------------------------

    const ONE: i128 = 1_000_000_000_000_000_000;
    /// ln((2^127 - 1) / 10^18) in raw units, rounded down.
    const EXP_THRESHOLD: i128 = 46_583_160_257_220_231_983;

    #[test]
    fn exp_table() {
        assert_eq!(exp_fixed(0), Ok(ONE));
        assert_eq!(exp_fixed(ONE), Ok(2_718_281_828_459_045_235));
        assert_eq!(exp_fixed(-ONE), Ok(367_879_441_171_442_322));
        assert_eq!(exp_fixed(ONE / 2), Ok(1_648_721_270_700_128_147));
        assert_eq!(exp_fixed(10 * ONE), Ok(22_026_465_794_806_716_516_958));
        // e^46 * 10^18 = 9.5 * 10^37: the bound allows 0.5 + 95 raw units here.
        let e46 = exp_fixed(46 * ONE).unwrap();
        assert!((e46 - 94_961_194_206_024_488_745_133_649_117_118_323_102).abs() <= 95);
        assert_eq!(exp_fixed(-40 * ONE), Ok(4));
        assert_eq!(exp_fixed(1), Ok(ONE + 1));
        assert_eq!(exp_fixed(-1), Ok(ONE - 1));
        assert_eq!(exp_fixed(-50 * ONE), Ok(0));
        assert_eq!(exp_fixed(i128::MIN), Ok(0));
        let overflow = Err(NumError::Overflow { op: "exp" });
        assert_eq!(exp_fixed(100 * ONE), overflow);
        assert_eq!(exp_fixed(i128::MAX), overflow);
        assert_eq!(exp_fixed(EXP_THRESHOLD + 1), overflow);
        assert_eq!(exp_fixed(47 * ONE), overflow);
        assert_eq!(exp_fixed(47 * ONE + 1), overflow);
        // Just below the threshold the result fits and is within the bound of i128::MAX.
        let top = exp_fixed(EXP_THRESHOLD - 1).unwrap();
        assert!(i128::MAX - top < 10i128.pow(21), "{top}");
        for x in [
            0,
            1,
            -1,
            ONE,
            -ONE,
            EXP_THRESHOLD - 1,
            EXP_THRESHOLD,
            -42 * ONE,
            EXP_MIN_INPUT,
            EXP_MIN_INPUT - 1,
            EXP_MAX_INPUT,
            693_147_180_559_945_309,
            -693_147_180_559_945_309,
            693_147_180_559_945_310,
        ] {
            check_exp(x).unwrap();
        }
    }

    /// Integer multiples of ln 2 land exactly on the boundary between two `k`; both sides are checked.
    #[test]
    fn exp_at_multiples_of_ln2() {
        let ln2 = 693_147_180_559_945_309i128; // rounded down
        for k in -62..=67i128 {
            for delta in -2..=2 {
                check_exp(k * ln2 + delta).unwrap();
            }
        }
    }

    fn exp_inputs() -> impl Strategy<Value = i128> {
        prop_oneof![
            // The whole domain including the underflow-to-0 and overflow edges.
            (EXP_MIN_INPUT - ONE..=EXP_MAX_INPUT + ONE),
            (-42 * ONE..=88 * ONE),
            // Near 0.
            (-1_000_000i128..=1_000_000),
            (-ONE..=ONE),
            // Near the overflow threshold.
            (EXP_THRESHOLD - 10i128.pow(9)..=EXP_THRESHOLD + 10i128.pow(9)),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(6_000))]

        #[test]
        fn exp_within_documented_bound(x in exp_inputs()) {
            if let Err(message) = check_exp(x) {
                return Err(TestCaseError::fail(message));
            }
        }

        #[test]
        fn ln_of_exp_round_trips(x in (-10 * ONE..=46 * ONE)) {
            // exp(x) >= 4.5 * 10^13 raw, so its relative rounding error is below 1.2e-14 and ln recovers x to
            // within 1.2e4 raw units (plus ln's own half unit).
            let y = exp_fixed(x).unwrap();
            let back = ln_fixed(y).unwrap();
            let tolerance = if x >= 0 { 2 } else { 12_000 };
            prop_assert!((back - x).abs() <= tolerance, "ln(exp({})) = {}", x, back);
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_config(20_000))]

        #[test]
        fn exp_never_panics_and_saturates(x in any::<i128>()) {
            match exp_fixed(x) {
                Ok(v) => prop_assert!(v >= 0 && x <= EXP_THRESHOLD),
                Err(e) => prop_assert!(
                    e == NumError::Overflow { op: "exp" } && x > EXP_THRESHOLD - 10,
                    "exp({}) = {:?}", x, e
                ),
            }
            if x < -43 * ONE {
                prop_assert_eq!(exp_fixed(x), Ok(0));
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // ln
    // ---------------------------------------------------------------------------------------------------------------

    #[test]
    fn ln_table() {
        assert_eq!(ln_fixed(ONE), Ok(0));
        assert_eq!(ln_fixed(2_718_281_828_459_045_235), Ok(ONE));
        assert_eq!(ln_fixed(2 * ONE), Ok(693_147_180_559_945_309));
        assert_eq!(ln_fixed(ONE / 2), Ok(-693_147_180_559_945_309));
        assert_eq!(ln_fixed(3 * ONE), Ok(1_098_612_288_668_109_691));
        assert_eq!(ln_fixed(1), Ok(-41_446_531_673_892_822_312));
        assert_eq!(ln_fixed(10i128.pow(38)), Ok(46_051_701_859_880_913_680));
        assert_eq!(ln_fixed(i128::MAX), Ok(46_583_160_257_220_231_984));
        let domain = Err(NumError::Domain { op: "ln" });
        assert_eq!(ln_fixed(0), domain);
        assert_eq!(ln_fixed(-1), domain);
        assert_eq!(ln_fixed(i128::MIN), domain);
        for x in [
            1,
            2,
            3,
            ONE - 1,
            ONE,
            ONE + 1,
            i128::MAX,
            i128::MAX - 1,
            1 << 126,
            (1 << 126) - 1,
            (1 << 126) + 1,
        ] {
            check_ln(x).unwrap();
        }
    }

    /// Powers of two and the sqrt(2) split points, where the reduction changes its exponent.
    #[test]
    fn ln_at_reduction_boundaries() {
        for j in 0..127u32 {
            let pow = 1i128 << j;
            for x in [pow - 1, pow, pow + 1] {
                if x > 0 {
                    check_ln(x).unwrap();
                }
            }
            if j >= 1 {
                // floor(sqrt(2) * 2^j) and neighbours.
                let split = (SQRT2_126 >> (126 - j)) as i128;
                for x in [split - 1, split, split + 1] {
                    check_ln(x).unwrap();
                }
            }
        }
    }

    fn ln_inputs() -> impl Strategy<Value = i128> {
        prop_oneof![
            // Log-uniform over [1, 2^127): a random bit length, then random bits.
            (1u32..=127, any::<u128>())
                .prop_map(|(bits, v)| { ((v >> (128 - bits)) | (1u128 << (bits - 1))) as i128 }),
            (1i128..=i128::MAX),
            // Near 1.0.
            (ONE - 10i128.pow(15)..=ONE + 10i128.pow(15)),
            (ONE - 1_000..=ONE + 1_000),
            // Tiny and huge.
            (1i128..=1_000_000),
            (i128::MAX - 10i128.pow(30)..=i128::MAX),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(6_000))]

        #[test]
        fn ln_within_documented_bound(x in ln_inputs()) {
            if let Err(message) = check_ln(x) {
                return Err(TestCaseError::fail(message));
            }
        }

        #[test]
        fn exp_of_ln_round_trips(x in prop_oneof![
            (1i128..=i128::MAX),
            (1u32..=127, any::<u128>()).prop_map(|(bits, v)| {
                ((v >> (128 - bits)) | (1u128 << (bits - 1))) as i128
            }),
        ]) {
            // ln(x) is off by at most half a raw unit (5e-19), so exp(ln(x)) is within a relative 5e-19 of x, plus
            // exp's own bound.
            let y = ln_fixed(x).unwrap();
            match exp_fixed(y) {
                Ok(back) => {
                    let tolerance = 1 + x / 10i128.pow(18);
                    prop_assert!((back - x).abs() <= tolerance, "exp(ln({})) = {}", x, back);
                }
                // Only at the very top: ln rounded up past the overflow threshold.
                Err(e) => prop_assert!(
                    e == NumError::Overflow { op: "exp" } && x > i128::MAX - i128::MAX / 10i128.pow(17),
                    "exp(ln({})): {:?}", x, e
                ),
            }
        }
    }

    #[test]
    fn fast_sqrt_equals_the_standard_library_around_every_perfect_square_scale() {
        // Around r^2 for r near every power of two and of ten up to 2^64: the places an estimate could be off by one.
        let mut roots: Vec<u128> = (0..64).map(|k| 1u128 << k).collect();
        roots.extend((0..20).map(|k| 10u128.pow(k)));
        roots.push((1u128 << 64) - 1);
        for base in roots {
            for r in base.saturating_sub(3)..=base.saturating_add(3).min((1u128 << 64) - 1) {
                let square = r * r;
                for n in [
                    square.saturating_sub(1),
                    square,
                    square.saturating_add(1),
                    square.saturating_add(2 * r),
                ] {
                    assert_eq!(sqrt_u128_floor(n), n.isqrt(), "n = {n}");
                }
            }
        }
        assert_eq!(sqrt_u128_floor(u128::MAX), u128::MAX.isqrt());
    }
}
