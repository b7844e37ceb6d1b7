//! Deterministic integer `sqrt`, `exp` and `ln` (placeholder: implemented in the next commit).

use crate::{NumError, NumResult};

/// Floor of the square root of `x`.
pub fn sqrt_u128_floor(x: u128) -> u128 {
    let mut r = (x as f64).sqrt() as u128;
    while r.checked_mul(r).is_none_or(|sq| sq > x) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|sq| sq <= x) {
        r += 1;
    }
    r
}

/// Square root of a fixed-point number with `decimals` decimals, rounded down.
pub fn sqrt_fixed_floor(x: i128, decimals: u32) -> NumResult<i128> {
    let _ = decimals;
    if x < 0 {
        return Err(NumError::Domain { op: "sqrt" });
    }
    Err(NumError::Domain {
        op: "sqrt (not yet implemented)",
    })
}

/// e^x at scale 10^18.
pub fn exp_fixed(x: i128) -> NumResult<i128> {
    let _ = x;
    Err(NumError::Domain {
        op: "exp (not yet implemented)",
    })
}

/// ln(x) at scale 10^18.
pub fn ln_fixed(x: i128) -> NumResult<i128> {
    let _ = x;
    Err(NumError::Domain {
        op: "ln (not yet implemented)",
    })
}
