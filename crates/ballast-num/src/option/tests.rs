//! Tests of the fixed-point normal CDF and option pricing against an independent 80-digit big-integer reference and
//! against the f64 reference in `ballast-risk`. Every random test prints its seed; `BALLAST_SEED` overrides it.

use super::*;
use crate::math::{exp_fixed, ln_fixed};

/// `floor(ln 2 * 2^64)`.
const LN2_Q64: i128 = LN2_Q120 >> 56;
use ballast_risk::{EuropeanOption, Model, OptionInputs, OptionKind};
use num_bigint::BigInt;
use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

// -------------------------------------------------------------------------------------------------------------------
// Reference: plain big-integer arithmetic at scale 10^80, series run until their terms vanish. Slow, simple, and
// independent of the table, the node spacing and the polynomial length above.
// -------------------------------------------------------------------------------------------------------------------

const REF_DIGITS: u32 = 80;

fn pow10(exp: u32) -> BigInt {
    BigInt::from(10u8).pow(exp)
}

fn big(v: i128) -> BigInt {
    BigInt::from(v)
}

fn zero() -> BigInt {
    BigInt::from(0)
}

/// The reference scale, 10^80.
fn scale() -> &'static BigInt {
    static S: OnceLock<BigInt> = OnceLock::new();
    S.get_or_init(|| pow10(REF_DIGITS))
}

/// A raw value at scale 10^18 at the reference scale.
fn from_raw(v: i128) -> BigInt {
    big(v) * pow10(REF_DIGITS - 18)
}

fn abs(v: BigInt) -> BigInt {
    if v < zero() {
        -v
    } else {
        v
    }
}

/// atanh(s / S) * S for |s| <= S / 3.
fn ref_atanh(s: &BigInt) -> BigInt {
    let scale = scale();
    let s2 = s * s / scale;
    let mut term = s.clone();
    let mut sum = zero();
    let mut i = 0u32;
    while term != zero() {
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
    let s = (&m - scale) * scale / (&m + scale);
    BigInt::from(e) * ref_ln2() + 2 * ref_atanh(&s)
}

/// e^(x / S) * S, by e^x = 2^k e^r with |r| < ln 2.
fn ref_exp(x: &BigInt) -> BigInt {
    let scale = scale();
    let ln2 = ref_ln2();
    let k = x / ln2;
    let r = x - &k * ln2;
    let mut term = scale.clone();
    let mut sum = scale.clone();
    let mut n = 1u32;
    while term != zero() {
        term = term * &r / (scale * BigInt::from(n));
        sum += &term;
        n += 1;
    }
    let k = i64::try_from(k).unwrap();
    if k >= 0 {
        sum << k
    } else {
        sum >> (-k)
    }
}

/// atan(1 / n) * S.
fn ref_atan_inv(n: u32) -> BigInt {
    let n2 = BigInt::from(n) * BigInt::from(n);
    let mut term = scale() / BigInt::from(n); // (1/n)^(2i+1)
    let mut sum = zero();
    let mut i = 0u32;
    while term != zero() {
        let part = &term / BigInt::from(2 * i + 1);
        if i & 1 == 0 {
            sum += part;
        } else {
            sum -= part;
        }
        term /= &n2;
        i += 1;
    }
    sum
}

/// pi * S by Machin's formula.
fn ref_pi() -> &'static BigInt {
    static PI: OnceLock<BigInt> = OnceLock::new();
    PI.get_or_init(|| 16 * ref_atan_inv(5) - 4 * ref_atan_inv(239))
}

/// S / sqrt(2 pi).
fn ref_inv_sqrt_2pi() -> &'static BigInt {
    static V: OnceLock<BigInt> = OnceLock::new();
    V.get_or_init(|| {
        let scale = scale();
        let sqrt_2pi: BigInt = (ref_pi() * scale * 2u32).sqrt();
        scale * scale / sqrt_2pi
    })
}

/// n(x / S) * S, the normal density.
fn ref_density(x: &BigInt) -> BigInt {
    let scale = scale();
    let half_square: BigInt = x * x / (scale * 2u32);
    ref_exp(&-half_square) * ref_inv_sqrt_2pi() / scale
}

/// N(x / S) * S, by N(x) = 1/2 + n(x) sum_(i >= 0) x^(2i+1) / (1 * 3 * ... * (2i+1)) (all terms of one sign, so no
/// cancellation inside the sum). Beyond |x| = 14 the tail is below 10^-44 and taken as 0.
fn ref_cdf(x: &BigInt) -> BigInt {
    let scale = scale();
    if abs(x.clone()) > 14 * scale {
        return if *x > zero() { scale.clone() } else { zero() };
    }
    let square = x * x / scale;
    let mut term = x.clone();
    let mut sum = x.clone();
    let mut i = 1u32;
    while term != zero() {
        term = term * &square / (scale * BigInt::from(2 * i + 1));
        sum += &term;
        i += 1;
    }
    scale / 2 + ref_density(x) * sum / scale
}

/// The exact price and delta of the fixed-point inputs (exact rationals), at the reference scale, and the larger
/// discounted leg `M`.
struct RefResult {
    price: BigInt,
    delta: BigInt,
}

fn ref_price(side: OptionSide, inputs: &EuropeanInputs) -> RefResult {
    let scale = scale();
    // rT and qT at scale 10^80: raw * raw * 10^-36 * 10^80.
    let rate_time = big(inputs.rate) * big(inputs.years) * pow10(2 * REF_DIGITS - 36 - REF_DIGITS);
    let yield_time =
        big(inputs.carry_yield) * big(inputs.years) * pow10(2 * REF_DIGITS - 36 - REF_DIGITS);
    let carry_discount = ref_exp(&-&yield_time);
    let rate_discount = ref_exp(&-&rate_time);
    let spot_leg = from_raw(inputs.spot) * &carry_discount / scale;
    let strike_leg = from_raw(inputs.strike) * &rate_discount / scale;
    // sqrt(T) * S = sqrt(T_raw * 10^(2 * 80 - 18)).
    let sqrt_years = (big(inputs.years) * pow10(2 * REF_DIGITS - 18)).sqrt();
    let total_std_dev = from_raw(inputs.vol) * sqrt_years / scale;
    let log_moneyness =
        ref_ln_int(&big(inputs.spot)) - ref_ln_int(&big(inputs.strike)) + &rate_time - &yield_time;
    let (cdf_d1, cdf_d2) = if total_std_dev == zero() {
        let step = |v: &BigInt| {
            if *v > zero() {
                scale.clone()
            } else if *v < zero() {
                zero()
            } else {
                scale / 2
            }
        };
        (step(&log_moneyness), step(&log_moneyness))
    } else {
        let d1 = &log_moneyness * scale / &total_std_dev + &total_std_dev / 2;
        let d2 = &d1 - &total_std_dev;
        (ref_cdf(&d1), ref_cdf(&d2))
    };
    let call = &spot_leg * &cdf_d1 / scale - &strike_leg * &cdf_d2 / scale;
    let call_delta = &carry_discount * &cdf_d1 / scale;
    match side {
        OptionSide::Call => RefResult {
            price: call,
            delta: call_delta,
        },
        OptionSide::Put => RefResult {
            // Mirror: K e^(-rT) N(-d2) - S e^(-qT) N(-d1).
            price: &strike_leg * (scale - &cdf_d2) / scale - &spot_leg * (scale - &cdf_d1) / scale,
            delta: call_delta - carry_discount,
        },
    }
}

/// `|got_raw - exact|` in units of 10^-4 raw, as f64 (for reports).
fn err_raw(got: i128, exact: &BigInt) -> f64 {
    let e = abs(from_raw(got) - exact) / pow10(REF_DIGITS - 18 - 4);
    i128::try_from(e)
        .map(|v| v as f64 / 1e4)
        .unwrap_or(f64::MAX)
}

// -------------------------------------------------------------------------------------------------------------------
// Seeded inputs
// -------------------------------------------------------------------------------------------------------------------

/// A seeded ChaCha stream; prints its seed.
struct Sampler(ChaCha8Rng);

impl Sampler {
    fn new(test: &str, default_seed: u64) -> Sampler {
        let seed = std::env::var("BALLAST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed);
        println!("{test}: ChaCha8 seed {seed} (reproduce with BALLAST_SEED={seed})");
        Sampler(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in `[lo, hi]` (the modulo bias is irrelevant here).
    fn uniform(&mut self, lo: i128, hi: i128) -> i128 {
        let span = (hi - lo) as u128 + 1;
        let v = ((self.0.next_u64() as u128) << 64) | self.0.next_u64() as u128;
        lo + (v % span) as i128
    }
    /// Log-uniform in `[lo, hi]`, both > 0, with the crate's own deterministic `ln` and `exp`.
    fn log_uniform(&mut self, lo: i128, hi: i128) -> i128 {
        let (a, b) = (ln_fixed(lo).unwrap(), ln_fixed(hi).unwrap());
        exp_fixed(self.uniform(a, b)).unwrap().clamp(lo, hi)
    }
    fn coin(&mut self) -> bool {
        self.0.next_u64() & 1 == 1
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
}

/// The accuracy domain of the module doc.
const PRICE_LO: i128 = ONE / 1_000_000; // 10^-6 USD
const PRICE_HI: i128 = 1_000_000_000 * ONE; // 10^9 USD
const VOL_LO: i128 = ONE / 100;
const VOL_HI: i128 = 10 * ONE;
/// One second of a 365-day year, rounded up: 10^18 / 31_536_000.
const YEARS_LO: i128 = 31_709_791_984;
const YEARS_HI: i128 = 10 * ONE;
const RATE_ABS_HI: i128 = ONE;

#[derive(Clone, Copy, Debug)]
struct Case {
    side: OptionSide,
    model: Model,
    inputs: EuropeanInputs,
}

/// Random inputs over the accuracy domain: a quarter Black-76; half the strikes independent of the spot over the
/// whole range, half within a factor 2 of it.
fn draw_case(sampler: &mut Sampler) -> Case {
    let side = if sampler.coin() {
        OptionSide::Call
    } else {
        OptionSide::Put
    };
    let spot = sampler.log_uniform(PRICE_LO, PRICE_HI);
    let strike = if sampler.coin() {
        sampler.log_uniform(PRICE_LO, PRICE_HI)
    } else {
        mul_div(
            spot,
            sampler.log_uniform(ONE / 2, 2 * ONE),
            ONE,
            Rounding::Floor,
        )
        .unwrap()
        .clamp(PRICE_LO, PRICE_HI)
    };
    let vol = sampler.log_uniform(VOL_LO, VOL_HI);
    let years = sampler.log_uniform(YEARS_LO, YEARS_HI);
    let rate = sampler.uniform(-RATE_ABS_HI, RATE_ABS_HI);
    if sampler.below(4) == 0 {
        Case {
            side,
            model: Model::Black76,
            inputs: EuropeanInputs::black76(spot, strike, vol, years, rate),
        }
    } else {
        let carry_yield = sampler.uniform(-RATE_ABS_HI, RATE_ABS_HI);
        Case {
            side,
            model: Model::BlackScholes,
            inputs: EuropeanInputs {
                spot,
                strike,
                vol,
                years,
                rate,
                carry_yield,
            },
        }
    }
}

fn to_f64(raw: i128) -> f64 {
    raw as f64 / 1e18
}

/// The f64 reference: `(price, delta)`.
fn f64_price(case: &Case) -> (f64, f64) {
    let i = case.inputs;
    let option = EuropeanOption::new(OptionInputs {
        model: case.model,
        kind: match case.side {
            OptionSide::Call => OptionKind::Call,
            OptionSide::Put => OptionKind::Put,
        },
        underlying: to_f64(i.spot),
        strike: to_f64(i.strike),
        rate: to_f64(i.rate),
        dividend_yield: match case.model {
            Model::BlackScholes => to_f64(i.carry_yield),
            Model::Black76 => 0.0,
        },
        expiry_years: to_f64(i.years),
    })
    .unwrap();
    let greeks = option.greeks(to_f64(i.vol)).unwrap();
    (greeks.price, greeks.delta)
}

/// The larger discounted leg `M = max(S e^(-qT), K e^(-rT))`, raw, as the pricing computes it.
fn larger_leg(inputs: &EuropeanInputs) -> i128 {
    let p = prepare(inputs).unwrap();
    p.spot_leg.max(p.strike_leg)
}

/// The documented price bound, raw units times 10^62 (reference units).
fn price_bound_ref(inputs: &EuropeanInputs) -> BigInt {
    let m = larger_leg(inputs) + 1;
    big(PRICE_ERROR_PER_LEG) * big(m) * pow10(REF_DIGITS - 36)
        + big(PRICE_ERROR_ABS) * pow10(REF_DIGITS - 18)
}

// -------------------------------------------------------------------------------------------------------------------
// The reference itself and the table's constants.
// -------------------------------------------------------------------------------------------------------------------

#[test]
fn reference_matches_published_digits() {
    // pi and 1/sqrt(2 pi) (OEIS A000796, A231863), truncated.
    let pi = "3141592653589793238462643383279502884197169399375105820974944592307816406286";
    assert_eq!(&ref_pi().to_string()[..76], pi);
    let inv_sqrt_2pi =
        "3989422804014326779399460599343818684758586311649346576659258296706579258993";
    assert_eq!(&ref_inv_sqrt_2pi().to_string()[..76], inv_sqrt_2pi);
    // N(1) = 0.841344746068542948585232545632037922477..., N(-7) = 1.279812543885835004383623690780...e-12.
    let n1 = ref_cdf(scale()).to_string();
    assert_eq!(&n1[..39], "841344746068542948585232545632037922477");
    let n7 = ref_cdf(&(-7 * scale())).to_string();
    assert_eq!(&n7[..30], "127981254388583500438362369078");
    assert_eq!(n7.len(), REF_DIGITS as usize - 11);
}

#[test]
fn table_constants_are_exact() {
    let two127 = BigInt::from(1) << 127u32;
    assert_eq!(
        BigInt::from(INV_SQRT_2PI_127),
        &two127 * ref_inv_sqrt_2pi() / scale()
    );
    assert_eq!(
        BigInt::from(STEP_127),
        (BigInt::from(1) << (55 + 127u32)) / pow10(18)
    );
    assert_eq!(
        BigInt::from(STEP_SQUARED_127),
        (BigInt::from(1) << (110 + 127u32)) / pow10(36)
    );
}

/// Every node's tail and density within half a unit of 2^-64 (plus 0.01 for the compile-time stepping), and every
/// polynomial coefficient within one unit of 2^-62 of the exact recurrence.
#[test]
fn table_nodes_match_reference() {
    let scale = scale();
    let two64 = BigInt::from(1) << 64u32;
    let two62 = BigInt::from(1) << 62u32;
    let step = BigInt::from(1u64 << GRID_SHIFT_RAW) * pow10(REF_DIGITS - 18); // D * S
    let mut worst_tail = 0f64;
    for (j, node) in TAIL_TABLE.iter().enumerate() {
        let y = BigInt::from(j) * &step;
        let tail = scale - ref_cdf(&y);
        // |node * S - exact * 2^64| <= 0.51 * S.
        let err = abs(BigInt::from(node.tail_q64) * scale - &tail * &two64);
        assert!(
            err.clone() * 100 <= 51 * scale,
            "node {j}: tail {} vs exact {}",
            node.tail_q64,
            &tail * &two64 / scale
        );
        worst_tail = worst_tail.max(i128::try_from(err * 1000 / scale).unwrap() as f64 / 1000.0);
        let density_step = ref_density(&y) * &step / scale;
        let err = abs(BigInt::from(node.density_step_q64) * scale - &density_step * &two64);
        assert!(err * 100 <= 51 * scale, "node {j}: density");
        // a'_(k+1) = -D^2 (j a'_k + a'_(k-1)) / (k + 1), a'_0 = 1, at scale S; b_k = a'_k / (k + 1).
        let step_squared = &step * &step / scale;
        let (mut previous, mut current) = (zero(), scale.clone());
        for (k, &coeff) in node.coeffs_q62.iter().enumerate() {
            let b = &current / BigInt::from(k + 1);
            let err = abs(BigInt::from(coeff) * scale - &b * &two62);
            assert!(err <= *scale, "node {j} coefficient {k}: {coeff}");
            let next = -(&step_squared * (BigInt::from(j) * &current + &previous) / scale)
                / BigInt::from(k + 1);
            previous = std::mem::replace(&mut current, next);
        }
    }
    println!("largest node tail error: {worst_tail} units of 2^-64");
    // The tail is non-increasing node to node.
    assert!(TAIL_TABLE
        .windows(2)
        .all(|w| w[0].tail_q64 >= w[1].tail_q64));
    assert_eq!(TAIL_TABLE[0].tail_q64, 1 << 63);
}

// -------------------------------------------------------------------------------------------------------------------
// normal_cdf_fixed
// -------------------------------------------------------------------------------------------------------------------

/// The documented bound, 0.65 raw units, at the reference scale.
fn cdf_bound_ref() -> BigInt {
    65 * pow10(REF_DIGITS - 18) / 100
}

fn check_cdf(x: i128) -> Result<f64, String> {
    let got = normal_cdf_fixed(x).map_err(|e| format!("N({x}): {e}"))?;
    let exact = ref_cdf(&from_raw(x));
    let err = abs(from_raw(got) - &exact);
    if err > cdf_bound_ref() {
        return Err(format!("N({x}) = {got}, exact * 10^62 = {exact}"));
    }
    Ok(err_raw(got, &exact))
}

#[test]
fn normal_cdf_table() {
    let cases = [
        (0, 500_000_000_000_000_000),
        (ONE, 841_344_746_068_542_949),
        (-ONE, 158_655_253_931_457_051),
        (2 * ONE, 977_249_868_051_820_793),
        (3 * ONE, 998_650_101_968_369_905),
        (ONE / 2, 691_462_461_274_013_104),
        (-ONE / 4, 401_293_674_317_076_276),
        (1_959_963_984_540_054_000, 974_999_999_999_999_986),
        (5 * ONE, 999_999_713_348_428_121),
        (-7 * ONE, 1_279_813),
        // The exact value is ...990.52: within 0.15 raw units of a tie, the bound allows either neighbour.
        (8_500_000_000_000_000_000, 999_999_999_999_999_990),
        (-8_840_000_000_000_000_000, 0),
        (NORMAL_CDF_SATURATION - 1, ONE),
        (-NORMAL_CDF_SATURATION + 1, 0),
        (NORMAL_CDF_SATURATION, ONE),
        (-NORMAL_CDF_SATURATION, 0),
        (i128::MAX, ONE),
        (i128::MIN, 0),
    ];
    for (x, expected) in cases {
        assert_eq!(normal_cdf_fixed(x), Ok(expected), "N({x})");
    }
    for x in [
        0,
        1,
        -1,
        ONE,
        -ONE,
        3 * ONE,
        -8 * ONE,
        8_840_000_000_000_000_000,
    ] {
        check_cdf(x).unwrap();
    }
}

/// At, just below and just above every node (where the piece changes) and at the saturation point.
#[test]
fn normal_cdf_within_bound_at_nodes() {
    let mut worst = 0f64;
    for j in 0..GRID_NODES as i128 {
        let y = j << GRID_SHIFT_RAW;
        for x in [y - 1, y, y + 1, -y - 1, -y, -y + 1] {
            worst = worst.max(check_cdf(x).unwrap());
        }
    }
    println!("largest error at nodes: {worst} raw units");
}

#[test]
fn normal_cdf_within_bound_random() {
    let mut sampler = Sampler::new("normal_cdf_within_bound_random", 1);
    let mut worst = 0f64;
    for i in 0..800 {
        let x = match i % 4 {
            0 => sampler.uniform(-10 * ONE, 10 * ONE),
            1 => sampler.uniform(-3 * ONE, 3 * ONE),
            2 => sampler.uniform(-ONE / 100, ONE / 100),
            _ => sampler.uniform(7 * ONE, 9 * ONE) * if sampler.coin() { 1 } else { -1 },
        };
        worst = worst.max(check_cdf(x).unwrap());
    }
    println!("largest error on random inputs: {worst} raw units");
}

/// Monotone on every raw step around every node, across 0 and near saturation, at the level of the internal tail
/// (scale 2^64, which implies it for the rounded result).
#[test]
fn normal_cdf_is_monotone_around_nodes() {
    for j in 1..GRID_PIECES as u64 {
        let y = j << GRID_SHIFT_RAW;
        let mut previous = upper_tail_q64(y - 1_500);
        for v in y - 1_499..y + 1_500 {
            let t = upper_tail_q64(v);
            assert!(t <= previous, "tail rises at {v}");
            previous = t;
        }
    }
    let mut previous = normal_cdf_fixed(-5_000).unwrap();
    for x in -4_999..5_000 {
        let v = normal_cdf_fixed(x).unwrap();
        assert!(v >= previous, "N falls at {x}");
        previous = v;
    }
    let top = NORMAL_CDF_SATURATION as u64;
    let mut previous = upper_tail_q64(top - 3_000);
    for v in top - 2_999..top {
        let t = upper_tail_q64(v);
        assert!(t <= previous);
        previous = t;
    }
}

proptest! {
    #![proptest_config(crate::proptest_config(20_000))]

    #[test]
    fn normal_cdf_is_monotone(x in -10 * ONE..10 * ONE, delta in prop_oneof![1i128..=1, 1i128..1_000, 1i128..ONE]) {
        let (a, b) = (normal_cdf_fixed(x).unwrap(), normal_cdf_fixed(x + delta).unwrap());
        prop_assert!(a <= b, "N({}) = {} > N({}) = {}", x, a, x + delta, b);
        if x.unsigned_abs() < NORMAL_CDF_SATURATION as u128 && (x + delta).unsigned_abs() < NORMAL_CDF_SATURATION as u128
            && x >= 0
        {
            prop_assert!(upper_tail_q64(x as u64) >= upper_tail_q64((x + delta) as u64));
        }
    }

    #[test]
    fn normal_cdf_is_symmetric_and_saturates(x in any::<i128>()) {
        let n = normal_cdf_fixed(x).unwrap();
        prop_assert!((0..=ONE).contains(&n));
        if x != i128::MIN {
            prop_assert_eq!(n + normal_cdf_fixed(-x).unwrap(), ONE);
        }
        if x <= -NORMAL_CDF_SATURATION {
            prop_assert_eq!(n, 0);
        }
        if x >= NORMAL_CDF_SATURATION {
            prop_assert_eq!(n, ONE);
        }
    }
}

// -------------------------------------------------------------------------------------------------------------------
// ln_q64 and exp_q64_floor
// -------------------------------------------------------------------------------------------------------------------

#[test]
fn ln_and_exp_tables_match_reference() {
    let scale = scale();
    let two64 = BigInt::from(1) << 64u32;
    let two63 = BigInt::from(1) << 63u32;
    for (i, entry) in LN_TABLE.iter().enumerate() {
        let expected = ((BigInt::from(1) << 71u32) + (129 + 2 * i) / 2) / BigInt::from(129 + 2 * i);
        assert_eq!(BigInt::from(entry.reciprocal), expected, "reciprocal {i}");
        // ln(2^64 / r) = 64 ln 2 - ln r.
        let exact = 64 * ref_ln2() - ref_ln_int(&BigInt::from(entry.reciprocal));
        let err = abs(BigInt::from(entry.ln_inverse_q64) * scale - exact * &two64);
        assert!(err * 100 <= 51 * scale, "ln entry {i}");
    }
    for (j, &e) in EXP_TABLE_Q63.iter().enumerate() {
        let exact = ref_exp(&(scale * BigInt::from(j) / 64));
        let err = abs(BigInt::from(e) * scale - exact * &two63);
        assert!(err * 100 <= 51 * scale, "exp entry {j}");
    }
    for (n, &c) in LOG1P_COEFFS_Q62.iter().enumerate() {
        let magnitude = ((BigInt::from(1) << 62u32) + ((n + 1) >> 1)) / BigInt::from(n + 1);
        assert_eq!(
            BigInt::from(c),
            if n % 2 == 0 {
                magnitude.clone()
            } else {
                -magnitude
            }
        );
    }
    assert_eq!(
        BigInt::from(INV_LN2_Q32),
        (BigInt::from(1) << 32u32) * scale / ref_ln2()
    );
    assert_eq!(
        BigInt::from(LN_1E18_Q64),
        ref_ln_int(&pow10(18)) * &two64 / scale
    );
}

/// `|ln_q64(x) * S - ln(x) * 2^64 * S|` in units of 2^-64.
fn ln_q64_err(x: u128) -> f64 {
    let exact = ref_ln_int(&BigInt::from(x)) * (BigInt::from(1) << 64u32);
    let err = abs(big(ln_q64(x)) * scale() - exact) * 1000 / scale();
    i128::try_from(err).unwrap() as f64 / 1000.0
}

#[test]
fn ln_q64_within_bound() {
    let mut sampler = Sampler::new("ln_q64_within_bound", 4);
    let mut worst = 0f64;
    let mut inputs: Vec<u128> = vec![1, 2, 3, u128::MAX >> 1, 10u128.pow(18), 10u128.pow(30)];
    for bits in 1..=127u32 {
        let top = 1u128 << (bits - 1);
        inputs.extend([top, top + 1, (top << 1) - 1]);
    }
    for _ in 0..600 {
        let bits = sampler.below(127) as u32 + 1;
        let v = sampler.uniform(0, i128::MAX) as u128;
        inputs.push((v >> (128 - bits)) | (1u128 << (bits - 1)));
    }
    for x in inputs {
        let err = ln_q64_err(x);
        assert!(err <= 5.0, "ln_q64({x}): error {err} units of 2^-64");
        worst = worst.max(err);
    }
    println!("ln_q64: largest error {worst} units of 2^-64");
}

#[test]
fn exp_q64_within_bound() {
    let mut sampler = Sampler::new("exp_q64_within_bound", 5);
    let scale = scale();
    let two64 = BigInt::from(1) << 64u32;
    let mut worst = 0f64;
    let mut inputs: Vec<i128> = vec![0, 1, -1, LN2_Q64, LN2_Q64 - 1, LN2_Q64 + 1];
    for k in -3..=126i128 {
        let y = (k * LN2_Q120) >> 56;
        inputs.extend([y - 1, y, y + 1]);
    }
    for _ in 0..600 {
        inputs.push(sampler.uniform(-5 << 64, 88 << 64));
    }
    for y in inputs {
        // e^(y / 2^64) * S.
        let exact = ref_exp(&(big(y) * scale / &two64));
        match exp_q64_floor(y) {
            Some(got) => {
                // got <= exact (1 + 2^-61) and got > exact (1 - 2^-61) - 1.
                let got_ref = BigInt::from(got) * scale;
                let slack = &exact / (BigInt::from(1) << 61u32);
                assert!(got_ref <= &exact + &slack, "exp({y}) = {got} too big");
                assert!(
                    got_ref + scale > &exact - &slack,
                    "exp({y}) = {got} too small"
                );
                if got > 1 << 70 {
                    let rel = abs(BigInt::from(got) * scale - &exact) * pow10(30) / &exact;
                    worst = worst.max(i128::try_from(rel).unwrap() as f64 / 1e30);
                }
            }
            None => assert!(
                exact >= (BigInt::from(1) << 127u32) * scale - &exact / (BigInt::from(1) << 60u32),
                "exp({y}) refused"
            ),
        }
    }
    println!("exp_q64_floor: largest relative error {worst:e}");
}

// -------------------------------------------------------------------------------------------------------------------
// Pricing
// -------------------------------------------------------------------------------------------------------------------

fn parse(text: &str) -> i128 {
    crate::parse_decimal(text, 18).unwrap()
}

fn bs(
    spot: &str,
    strike: &str,
    vol: &str,
    years: &str,
    rate: &str,
    carry_yield: &str,
) -> EuropeanInputs {
    EuropeanInputs {
        spot: parse(spot),
        strike: parse(strike),
        vol: parse(vol),
        years: parse(years),
        rate: parse(rate),
        carry_yield: parse(carry_yield),
    }
}

/// Hull's examples, to the digits Hull prints and against the reference.
#[test]
fn hull_examples() {
    let check = |side, inputs: EuropeanInputs, printed: &str| {
        let got = european_price(side, &inputs).unwrap();
        let exact = ref_price(side, &inputs).price;
        assert!(
            abs(from_raw(got) - &exact) <= price_bound_ref(&inputs),
            "{side:?} {inputs:?}: {got}"
        );
        let digits = printed.split('.').nth(1).unwrap().len() as u32;
        let unit = 10i128.pow(18 - digits);
        let rounded = (got + unit / 2) / unit * unit;
        assert_eq!(rounded, parse(printed), "{side:?} {inputs:?}: {got}");
        got
    };
    // Stock option: S = 42, K = 40, r = 10 %, vol = 20 %, T = 0.5: c = 4.7594, p = 0.8086.
    let stock = bs("42", "40", "0.2", "0.5", "0.1", "0");
    let call = check(OptionSide::Call, stock, "4.7594");
    let put = check(OptionSide::Put, stock, "0.8086");
    // To 10^-15 USD (the call is 1.8 * 10^-16 off): the exact values are 4.759422392871533395... and
    // 0.808599372900093653... (the f64 reference prints 4.759422392871542, 2e-15 relative off).
    assert!((call - 4_759_422_392_871_533_395).abs() <= 1_000, "{call}");
    assert!((put - 808_599_372_900_093_653).abs() <= 1_000, "{put}");
    // Index option with a 3 % yield: S = 930, K = 900, r = 8 %, vol = 20 %, T = 2 months: c = 51.83.
    let years = mul_div(ONE, 1, 6, Rounding::Floor).unwrap();
    let index = EuropeanInputs {
        years,
        ..bs("930", "900", "0.2", "0", "0.08", "0.03")
    };
    check(OptionSide::Call, index, "51.83");
    // Black-76 futures option: F = K = 20, r = 9 %, vol = 25 %, T = 4 months: p = 1.12.
    let years = mul_div(ONE, 1, 3, Rounding::Floor).unwrap();
    let futures = EuropeanInputs::black76(
        parse("20"),
        parse("20"),
        parse("0.25"),
        years,
        parse("0.09"),
    );
    check(OptionSide::Put, futures, "1.12");
    check(OptionSide::Put, futures, "1.1166");
}

/// `s = vol * sqrt(T)` and `e^(-qT)` as f64, for tolerances.
fn std_dev_and_carry_discount(inputs: &EuropeanInputs) -> (f64, f64) {
    let p = prepare(inputs).unwrap();
    let sqrt_years = sqrt_u128_floor(inputs.years as u128 * ONE as u128) as i128;
    let s = mul_div(inputs.vol, sqrt_years, ONE, Rounding::Floor).unwrap();
    (
        to_f64(s),
        2f64.powf(-(p.yield_time_q64 as f64) / 2f64.powi(64) / std::f64::consts::LN_2),
    )
}

/// The delta bound of [`european_delta`]'s doc, raw units times 10^62.
fn delta_bound_ref(inputs: &EuropeanInputs) -> BigInt {
    let (s, carry_discount) = std_dev_and_carry_discount(inputs);
    let bound_raw = carry_discount * (2.0 + to_f64(inputs.vol)) * (1.0 + 1.0 / s) + 2.0;
    BigInt::from((bound_raw * 1e4).ceil() as i128) * pow10(REF_DIGITS - 18 - 4)
}

/// Price, delta and put-call parity against the 80-digit reference, within the documented bounds.
#[test]
fn price_matches_reference_within_documented_bound() {
    let mut sampler = Sampler::new("price_matches_reference_within_documented_bound", 2);
    let (mut worst_per_leg, mut worst_delta) = (0f64, 0f64);
    for _ in 0..600 {
        let case = draw_case(&mut sampler);
        let got = european_price(case.side, &case.inputs).unwrap();
        let exact = ref_price(case.side, &case.inputs);
        let bound = price_bound_ref(&case.inputs);
        assert!(
            abs(from_raw(got) - &exact.price) <= bound,
            "{case:?}: {got}, exact * 10^62 = {}",
            exact.price
        );
        let beyond = (err_raw(got, &exact.price) - PRICE_ERROR_ABS as f64).max(0.0);
        worst_per_leg = worst_per_leg.max(beyond / larger_leg(&case.inputs) as f64);
        let delta = european_delta(case.side, &case.inputs).unwrap();
        assert!(
            abs(from_raw(delta) - &exact.delta) <= delta_bound_ref(&case.inputs),
            "{case:?}: delta {delta}, exact * 10^62 = {}",
            exact.delta
        );
        worst_delta = worst_delta.max(err_raw(delta, &exact.delta));
        // Parity: C - P against the exact S e^(-qT) - K e^(-rT) (the reference's call minus put).
        let opposite = match case.side {
            OptionSide::Call => OptionSide::Put,
            OptionSide::Put => OptionSide::Call,
        };
        let other = european_price(opposite, &case.inputs).unwrap();
        let exact_other = ref_price(opposite, &case.inputs).price;
        let (call, put, exact_call, exact_put) = match case.side {
            OptionSide::Call => (got, other, &exact.price, &exact_other),
            OptionSide::Put => (other, got, &exact_other, &exact.price),
        };
        let parity_err = abs(from_raw(call - put) - (exact_call - exact_put));
        assert!(parity_err <= bound, "{case:?}: parity C {call} P {put}");
    }
    println!(
        "price error beyond {PRICE_ERROR_ABS} raw: largest {worst_per_leg:e} of M (bound {:e}); delta error: largest {worst_delta} raw units",
        PRICE_ERROR_PER_LEG as f64 / 1e18
    );
}

/// Agreement with `ballast_risk::EuropeanOption` (f64): `|fixed - f64| <= 10^-14 M + 10^-17` for the price (measured
/// up to 3 * 10^-15 M; the f64 side carries nearly all of it, see the reference test), and for the delta
/// `5 * 10^-14 e^(-qT) (1 + |ln(S/K)|) (1 + 1/s)` (the f64 delta's own rounding of `ln(S/K) / s`).
#[test]
fn price_matches_f64_reference() {
    let mut sampler = Sampler::new("price_matches_f64_reference", 3);
    let (mut worst_per_leg, mut worst_per_max) = (0f64, 0f64);
    for _ in 0..10_000 {
        let case = draw_case(&mut sampler);
        let got = european_price(case.side, &case.inputs).unwrap();
        let delta = european_delta(case.side, &case.inputs).unwrap();
        let (price_f64, delta_f64) = f64_price(&case);
        let diff = (to_f64(got) - price_f64).abs();
        let m = to_f64(larger_leg(&case.inputs));
        assert!(
            diff <= 1e-14 * m + 1e-17,
            "{case:?}: fixed {got}, f64 {price_f64:e}"
        );
        let beyond = (diff - 1e-17).max(0.0);
        worst_per_leg = worst_per_leg.max(beyond / m);
        worst_per_max =
            worst_per_max.max(beyond / to_f64(case.inputs.spot.max(case.inputs.strike)));
        let (s, carry_discount) = std_dev_and_carry_discount(&case.inputs);
        let log_ratio = (to_f64(case.inputs.spot) / to_f64(case.inputs.strike))
            .ln()
            .abs();
        let delta_tolerance = 5e-14 * carry_discount * (1.0 + log_ratio) * (1.0 + 1.0 / s);
        assert!(
            (to_f64(delta) - delta_f64).abs() <= delta_tolerance,
            "{case:?}: delta {delta}, f64 {delta_f64:e}"
        );
    }
    println!(
        "fixed vs f64: largest |diff| - 1e-17 is {worst_per_leg:e} of M, {worst_per_max:e} of max(S, K)"
    );
}

/// `C - P = S e^(-qT) - K e^(-rT)` in fixed point, to one raw unit of the legs the pricing uses, and the result
/// within the no-arbitrage bounds, on random inputs over the whole accuracy domain.
#[test]
fn put_call_parity_and_no_arbitrage_bounds() {
    let mut sampler = Sampler::new("put_call_parity_and_no_arbitrage_bounds", 6);
    for _ in 0..5_000 {
        let case = draw_case(&mut sampler);
        let call = european_price(OptionSide::Call, &case.inputs).unwrap();
        let put = european_price(OptionSide::Put, &case.inputs).unwrap();
        let legs = prepare(&case.inputs).unwrap();
        let forward_value = legs.spot_leg - legs.strike_leg;
        assert!(
            (call - put - forward_value).abs() <= 1,
            "{case:?}: C {call} P {put}"
        );
        assert!(
            call >= forward_value.max(0) && call <= legs.spot_leg,
            "{case:?}: C {call}"
        );
        assert!(
            put >= (-forward_value).max(0) && put <= legs.strike_leg,
            "{case:?}: P {put}"
        );
        let call_delta = european_delta(OptionSide::Call, &case.inputs).unwrap();
        let put_delta = european_delta(OptionSide::Put, &case.inputs).unwrap();
        assert!(
            (0..=ONE * 23_000).contains(&call_delta) && put_delta <= 0,
            "{case:?}"
        );
        // Delta parity: delta_call - delta_put = e^(-qT), to one raw unit.
        let carry_discount = exp_q64_floor(LN_1E18_Q64 - legs.yield_time_q64).unwrap() as i128;
        let carry_discount = if legs.yield_time_q64 == 0 {
            ONE
        } else {
            carry_discount
        };
        assert!(
            (call_delta - put_delta - carry_discount).abs() <= 1,
            "{case:?}"
        );
    }
}

/// Calls non-decreasing and puts non-increasing in the spot, both non-decreasing in the volatility, to within the
/// error bound (the price is a difference of two rounded legs, so a change far below the bound can come out a few
/// raw units the wrong way; the count of such inversions is printed).
#[test]
fn price_is_monotone_in_spot_and_vol() {
    let mut sampler = Sampler::new("price_is_monotone_in_spot_and_vol", 7);
    let mut inversions = 0;
    for i in 0..3_000 {
        let case = draw_case(&mut sampler);
        let base = case.inputs;
        // Bumps from one raw unit to a factor of two.
        let bump = |v: i128, sampler: &mut Sampler| match i % 3 {
            0 => v + 1,
            1 => v + sampler.uniform(1, v / 1_000_000 + 1),
            _ => v + sampler.uniform(1, v),
        };
        let up_spot = EuropeanInputs {
            spot: bump(base.spot, &mut sampler).min(OPTION_PRICE_MAX),
            ..base
        };
        let up_vol = EuropeanInputs {
            vol: bump(base.vol, &mut sampler),
            ..base
        };
        for (side, higher, spot_sign) in [
            (OptionSide::Call, up_spot, 1),
            (OptionSide::Put, up_spot, -1),
            (OptionSide::Call, up_vol, 1),
            (OptionSide::Put, up_vol, 1),
        ] {
            let (a, b) = (
                european_price(side, &base).unwrap(),
                european_price(side, &higher).unwrap(),
            );
            let change = (b - a) * spot_sign;
            let tolerance =
                price_error_bound_ceil(&base).unwrap() + price_error_bound_ceil(&higher).unwrap();
            assert!(
                change >= -tolerance,
                "{side:?} {base:?} -> {higher:?}: {a} -> {b}"
            );
            if change < 0 {
                inversions += 1;
            }
        }
    }
    println!(
        "monotonicity: {inversions} inversions within the error bound out of 12000 comparisons"
    );
}

#[test]
fn zero_time_or_zero_vol_is_the_discounted_intrinsic_value() {
    // T = 0: exactly max(S - K, 0) and max(K - S, 0), whatever the rates.
    let expired = bs("2000.5", "1999.25", "0.8", "0", "0.3", "-0.2");
    assert_eq!(
        european_price(OptionSide::Call, &expired),
        Ok(parse("1.25"))
    );
    assert_eq!(european_price(OptionSide::Put, &expired), Ok(0));
    assert_eq!(european_delta(OptionSide::Call, &expired), Ok(ONE));
    assert_eq!(european_delta(OptionSide::Put, &expired), Ok(0));
    let at_the_money = bs("100", "100", "0.5", "0", "0.05", "0");
    assert_eq!(european_price(OptionSide::Call, &at_the_money), Ok(0));
    assert_eq!(european_delta(OptionSide::Call, &at_the_money), Ok(ONE / 2));
    assert_eq!(european_delta(OptionSide::Put, &at_the_money), Ok(-ONE / 2));
    // vol = 0, T > 0: max(S e^(-qT) - K e^(-rT), 0) from the same legs.
    for (spot, strike) in [("100", "90"), ("90", "100"), ("100", "100")] {
        let flat = bs(spot, strike, "0", "2", "0.05", "0.01");
        let legs = prepare(&flat).unwrap();
        assert!(matches!(legs.spread, Spread::Degenerate { .. }));
        let forward_value = legs.spot_leg - legs.strike_leg;
        assert_eq!(
            european_price(OptionSide::Call, &flat),
            Ok(forward_value.max(0))
        );
        assert_eq!(
            european_price(OptionSide::Put, &flat),
            Ok((-forward_value).max(0))
        );
        let exact = ref_price(OptionSide::Call, &flat).price;
        assert!(abs(from_raw(forward_value.max(0)) - exact) <= price_bound_ref(&flat));
    }
    // s = 10^-18 (rounds to nothing useful) behaves like s = 0 on either side of the strike.
    let tiny = EuropeanInputs {
        vol: 1,
        ..bs("101", "100", "0", "1", "0", "0")
    };
    assert_eq!(european_price(OptionSide::Call, &tiny), Ok(ONE));
    assert_eq!(european_price(OptionSide::Put, &tiny), Ok(0));
}

#[test]
fn black76_is_black_scholes_on_the_forward_with_the_yield_at_the_rate() {
    let futures = EuropeanInputs::black76(
        parse("20"),
        parse("21"),
        parse("0.25"),
        parse("0.4"),
        parse("0.09"),
    );
    assert_eq!(futures.spot, parse("20"));
    assert_eq!(futures.carry_yield, futures.rate);
    let legs = prepare(&futures).unwrap();
    // F e^(-rT) and K e^(-rT): the same discounting on both legs.
    let ratio = mul_div(legs.spot_leg, ONE, legs.strike_leg, Rounding::Floor).unwrap();
    assert!((ratio - mul_div(20 * ONE, ONE, 21 * ONE, Rounding::Floor).unwrap()).abs() <= 2);
    for side in [OptionSide::Call, OptionSide::Put] {
        let case = Case {
            side,
            model: Model::Black76,
            inputs: futures,
        };
        let (price_f64, delta_f64) = f64_price(&case);
        let got = european_price(side, &futures).unwrap();
        assert!(
            (to_f64(got) - price_f64).abs() < 1e-14,
            "{side:?}: {got} {price_f64}"
        );
        let delta = european_delta(side, &futures).unwrap();
        assert!(
            (to_f64(delta) - delta_f64).abs() < 1e-14,
            "{side:?}: {delta} {delta_f64}"
        );
    }
}

#[test]
fn invalid_inputs_are_domain_errors() {
    let good = bs("100", "90", "0.5", "1", "0.05", "0.01");
    let cases: [(EuropeanInputs, &str); 14] = [
        (EuropeanInputs { spot: 0, ..good }, "spot"),
        (EuropeanInputs { spot: -1, ..good }, "spot"),
        (
            EuropeanInputs {
                spot: OPTION_PRICE_MAX + 1,
                ..good
            },
            "spot",
        ),
        (EuropeanInputs { strike: 0, ..good }, "strike"),
        (
            EuropeanInputs {
                strike: i128::MIN,
                ..good
            },
            "strike",
        ),
        (
            EuropeanInputs {
                strike: i128::MAX,
                ..good
            },
            "strike",
        ),
        (EuropeanInputs { vol: -1, ..good }, "vol"),
        (
            EuropeanInputs {
                vol: OPTION_VOL_MAX + 1,
                ..good
            },
            "vol",
        ),
        (EuropeanInputs { years: -1, ..good }, "years"),
        (
            EuropeanInputs {
                years: OPTION_YEARS_MAX + 1,
                ..good
            },
            "years",
        ),
        (
            EuropeanInputs {
                rate: OPTION_RATE_ABS_MAX + 1,
                ..good
            },
            "rate",
        ),
        (
            EuropeanInputs {
                carry_yield: -OPTION_RATE_ABS_MAX - 1,
                ..good
            },
            "carry_yield",
        ),
        (
            EuropeanInputs {
                rate: 5 * ONE,
                years: 9 * ONE,
                ..good
            },
            "|rate * years|",
        ),
        (
            EuropeanInputs {
                carry_yield: -ONE,
                years: 41 * ONE,
                ..good
            },
            "|carry_yield * years|",
        ),
    ];
    for (inputs, field) in cases {
        for result in [
            european_price(OptionSide::Call, &inputs),
            european_delta(OptionSide::Put, &inputs),
            price_error_bound_ceil(&inputs),
        ] {
            match result {
                Err(NumError::Domain { op }) => assert!(op.contains(field), "{inputs:?}: {op}"),
                other => panic!("{inputs:?}: {other:?}"),
            }
        }
    }
    // At the limits: a spot of 10^12 USD with e^40 of carry does not fit i128, and says so.
    let huge = EuropeanInputs {
        spot: OPTION_PRICE_MAX,
        carry_yield: -4 * ONE,
        years: 10 * ONE,
        ..good
    };
    assert_eq!(
        european_price(OptionSide::Call, &huge),
        Err(NumError::Overflow {
            op: "european option: spot * e^(-qT)"
        })
    );
}

#[test]
fn error_bound_for_a_price() {
    let hull = bs("42", "40", "0.2", "0.5", "0.1", "0");
    // M = 42 (the spot leg, q = 0): 2 * 10^-17 * 42 = 840 raw units, plus 4.
    assert_eq!(price_error_bound_ceil(&hull), Ok(844));
    let deep = bs("0.000001", "1000000000", "0.5", "10", "-1", "0");
    // M = K e^(-rT) = 10^9 e^10: the bound is 4.4 * 10^-4 USD there.
    let bound = price_error_bound_ceil(&deep).unwrap();
    assert!(
        (440_529_315_800_000..440_529_315_900_000).contains(&bound),
        "{bound}"
    );
}

fn any_inputs() -> impl Strategy<Value = EuropeanInputs> {
    let price = prop_oneof![any::<i128>(), 1i128..=OPTION_PRICE_MAX, PRICE_LO..=PRICE_HI];
    let vol = prop_oneof![any::<i128>(), 0i128..=OPTION_VOL_MAX, Just(0i128)];
    let years = prop_oneof![
        any::<i128>(),
        0i128..=OPTION_YEARS_MAX,
        Just(0i128),
        0i128..1_000
    ];
    let rate = prop_oneof![
        any::<i128>(),
        -OPTION_RATE_ABS_MAX..=OPTION_RATE_ABS_MAX,
        Just(0i128)
    ];
    (price.clone(), price, vol, years, rate.clone(), rate).prop_map(
        |(spot, strike, vol, years, rate, carry_yield)| EuropeanInputs {
            spot,
            strike,
            vol,
            years,
            rate,
            carry_yield,
        },
    )
}

proptest! {
    #![proptest_config(crate::proptest_config(5_000))]

    /// Any inputs at all: a typed error or a price within its no-arbitrage bounds; never a panic.
    #[test]
    fn any_inputs_give_a_bounded_price_or_an_error(inputs in any_inputs()) {
        for side in [OptionSide::Call, OptionSide::Put] {
            match european_price(side, &inputs) {
                Ok(price) => {
                    let legs = prepare(&inputs).unwrap();
                    let upper = match side {
                        OptionSide::Call => legs.spot_leg,
                        OptionSide::Put => legs.strike_leg,
                    };
                    prop_assert!(price >= 0 && price <= upper, "{:?} {:?}: {}", side, inputs, price);
                }
                Err(e) => prop_assert!(
                    matches!(e, NumError::Domain { .. } | NumError::Overflow { .. }),
                    "{:?}",
                    e
                ),
            }
            let _ = european_delta(side, &inputs);
            let _ = price_error_bound_ceil(&inputs);
        }
    }
}
