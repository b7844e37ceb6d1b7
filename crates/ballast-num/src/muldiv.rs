//! `a * b / d` with one explicit rounding, exact for every `i128` input.

use crate::{NumError, NumResult};
use ruint::aliases::U256;

/// Which way a division rounds. With money the direction decides who pays the remainder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Toward negative infinity.
    Floor,
    /// Toward positive infinity.
    Ceil,
}

/// `a * b / d`, rounded as asked. The product is exact: when it does not fit in `i128` it is carried in 256 bits.
/// Errors on `d == 0` and when the quotient does not fit in `i128`.
#[inline]
pub fn mul_div(a: i128, b: i128, d: i128, rounding: Rounding) -> NumResult<i128> {
    if d == 0 {
        return Err(NumError::DivisionByZero { op: "mul_div" });
    }
    match a.checked_mul(b) {
        Some(product) => div_rounded(product, d, rounding),
        None => mul_div_wide(a, b, d, rounding),
    }
}

/// `n / d` rounded as asked; `d != 0`.
#[inline]
fn div_rounded(n: i128, d: i128, rounding: Rounding) -> NumResult<i128> {
    let q = n
        .checked_div(d)
        .ok_or(NumError::Overflow { op: "mul_div" })?;
    let r = n - q * d; // cannot overflow: |r| < |d|
    if r == 0 {
        return Ok(q);
    }
    let negative = (n < 0) != (d < 0);
    Ok(match (rounding, negative) {
        // Truncation rounded a negative quotient up: floor must step down.
        (Rounding::Floor, true) => q - 1,
        // Truncation rounded a positive quotient down: ceil must step up.
        (Rounding::Ceil, false) => q + 1,
        _ => q,
    })
}

#[cold]
fn mul_div_wide(a: i128, b: i128, d: i128, rounding: Rounding) -> NumResult<i128> {
    let negative = (a < 0) != (b < 0) && a != 0 && b != 0;
    let negative = negative != (d < 0);
    let product = U256::from(a.unsigned_abs()) * U256::from(b.unsigned_abs());
    let divisor = U256::from(d.unsigned_abs());
    let (mut q, r) = product.div_rem(divisor);
    let round_away = !r.is_zero()
        && match rounding {
            Rounding::Floor => negative,
            Rounding::Ceil => !negative,
        };
    if round_away {
        q += U256::from(1u8);
    }
    let overflow = NumError::Overflow { op: "mul_div" };
    let magnitude: u128 = u128::try_from(q).map_err(|_| overflow)?;
    if negative {
        if magnitude == 1u128 << 127 {
            Ok(i128::MIN)
        } else {
            i128::try_from(magnitude).map(|m| -m).map_err(|_| overflow)
        }
    } else {
        i128::try_from(magnitude).map_err(|_| overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;
    use proptest::prelude::*;

    fn reference(a: i128, b: i128, d: i128, rounding: Rounding) -> Option<i128> {
        let n = BigInt::from(a) * BigInt::from(b);
        let d = BigInt::from(d);
        // BigInt division truncates toward zero.
        let q = &n / &d;
        let r = &n - &q * &d;
        let zero = BigInt::from(0);
        let negative = (n < zero) != (d < zero);
        let q = if r == zero {
            q
        } else {
            match (rounding, negative) {
                (Rounding::Floor, true) => q - 1,
                (Rounding::Ceil, false) => q + 1,
                _ => q,
            }
        };
        i128::try_from(q).ok()
    }

    fn any_i128() -> impl Strategy<Value = i128> {
        prop_oneof![
            any::<i128>(),
            (-1_000_000_000_000i128..1_000_000_000_000),
            any::<i64>().prop_map(|v| v as i128),
            Just(i128::MIN),
            Just(i128::MAX),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(20_000))]
        #[test]
        fn matches_big_integer_reference(a in any_i128(), b in any_i128(), d in any_i128()) {
            prop_assume!(d != 0);
            for rounding in [Rounding::Floor, Rounding::Ceil] {
                let got = mul_div(a, b, d, rounding).ok();
                prop_assert_eq!(got, reference(a, b, d, rounding), "a={} b={} d={} {:?}", a, b, d, rounding);
            }
        }

        #[test]
        fn floor_never_exceeds_ceil_and_they_differ_by_at_most_one(a in any_i128(), b in any_i128(), d in any_i128()) {
            prop_assume!(d != 0);
            if let (Ok(lo), Ok(hi)) = (mul_div(a, b, d, Rounding::Floor), mul_div(a, b, d, Rounding::Ceil)) {
                prop_assert!(lo <= hi && hi - lo <= 1);
            }
        }
    }

    #[test]
    fn division_by_zero_is_an_error() {
        assert_eq!(
            mul_div(1, 1, 0, Rounding::Floor),
            Err(NumError::DivisionByZero { op: "mul_div" })
        );
    }

    #[test]
    fn table() {
        let cases = [
            (7, 1, 2, Rounding::Floor, 3),
            (7, 1, 2, Rounding::Ceil, 4),
            (-7, 1, 2, Rounding::Floor, -4),
            (-7, 1, 2, Rounding::Ceil, -3),
            (7, -1, -2, Rounding::Ceil, 4),
            (6, 1, 3, Rounding::Ceil, 2),
        ];
        for (a, b, d, rounding, expected) in cases {
            assert_eq!(
                mul_div(a, b, d, rounding),
                Ok(expected),
                "{a}*{b}/{d} {rounding:?}"
            );
        }
    }
}
