//! Tests of the option pricer: textbook values, parity, Greeks against finite differences, monotonicity, implied
//! volatility round trips and its refusals, and input validation.
//!
//! Random tests draw from SplitMix64 with a fixed seed per test, printed on every run; set `BALLAST_SEED` to run one
//! with another seed (and `cargo test -p ballast-risk -- --nocapture` to see the seeds).

use super::*;

// ----- harness ---------------------------------------------------------------------------------------------------

/// The seed for a random test: `BALLAST_SEED` if set (to reproduce a failure), else `default`. Printed always.
fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("BALLAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("{test}: seed {seed} (reproduce with BALLAST_SEED={seed})");
    seed
}

/// SplitMix64: a tiny, fully specified generator, so a seed reproduces the same stream on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Log-uniform in [lo, hi).
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (self.uniform(lo.ln(), hi.ln())).exp()
    }
    fn kind(&mut self) -> OptionKind {
        if self.next_u64() & 1 == 0 {
            OptionKind::Call
        } else {
            OptionKind::Put
        }
    }
    fn model(&mut self) -> Model {
        if self.next_u64() & 1 == 0 {
            Model::BlackScholes
        } else {
            Model::Black76
        }
    }
}

fn option(
    model: Model,
    kind: OptionKind,
    underlying: f64,
    strike: f64,
    rate: f64,
    dividend_yield: f64,
    expiry_years: f64,
) -> EuropeanOption {
    EuropeanOption::new(OptionInputs {
        model,
        kind,
        underlying,
        strike,
        rate,
        dividend_yield,
        expiry_years,
    })
    .unwrap_or_else(|e| panic!("valid inputs refused: {e}"))
}

/// Ranges where central differences are accurate to about 1e-8 relative (σ√T >= 0.02).
fn random_inputs(rng: &mut Rng, model: Model, kind: OptionKind) -> OptionInputs {
    let underlying = rng.log_uniform(0.5, 5_000.0);
    OptionInputs {
        model,
        kind,
        underlying,
        strike: underlying * rng.log_uniform(0.5, 2.0),
        rate: rng.uniform(-0.02, 0.15),
        dividend_yield: match model {
            Model::BlackScholes => rng.uniform(-0.02, 0.12),
            Model::Black76 => 0.0,
        },
        expiry_years: rng.log_uniform(0.05, 5.0),
    }
}

fn assert_close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (difference {:e}, tolerance {tolerance:e})",
        (actual - expected).abs()
    );
}

// ----- textbook values -------------------------------------------------------------------------------------------

/// Hull, Options, Futures, and Other Derivatives (the Black-Scholes-Merton chapter's example): S = 42, K = 40,
/// r = 10 %, σ = 20 %, T = 0.5 gives c = 4.76 and p = 0.81. The 16-digit references are the same formula evaluated
/// independently (Python, `math.erfc`).
#[test]
fn hull_stock_option() {
    let call = option(
        Model::BlackScholes,
        OptionKind::Call,
        42.0,
        40.0,
        0.10,
        0.0,
        0.5,
    );
    let put = option(
        Model::BlackScholes,
        OptionKind::Put,
        42.0,
        40.0,
        0.10,
        0.0,
        0.5,
    );
    let c = call.price(0.20).unwrap();
    let p = put.price(0.20).unwrap();
    assert_eq!(format!("{c:.2}"), "4.76");
    assert_eq!(format!("{p:.2}"), "0.81");
    assert_close("call", c, 4.759_422_392_871_535, 1e-12);
    assert_close("put", p, 0.808_599_372_900_096, 1e-12);
    // Hull's d1 = 0.7693, d2 = 0.6278, so the call's delta is N(0.7693) = 0.7791.
    let greeks = call.greeks(0.20).unwrap();
    assert_eq!(format!("{:.4}", greeks.delta), "0.7791");
    assert_eq!(greeks.price, c);
}

/// Hull's stock index example: S = 930, K = 900, r = 8 %, q = 3 %, σ = 20 %, T = 2 months gives c = 51.83.
#[test]
fn hull_index_option_with_dividend_yield() {
    let call = option(
        Model::BlackScholes,
        OptionKind::Call,
        930.0,
        900.0,
        0.08,
        0.03,
        2.0 / 12.0,
    );
    let c = call.price(0.20).unwrap();
    assert_eq!(format!("{c:.2}"), "51.83");
    assert_close("call", c, 51.832_956_796_490_86, 1e-10);
}

/// Hull's futures option example (Black's model): F = 20, K = 20, r = 9 %, σ = 25 %, T = 4 months gives p = 1.12.
#[test]
fn hull_futures_option_black_76() {
    let put = option(
        Model::Black76,
        OptionKind::Put,
        20.0,
        20.0,
        0.09,
        0.0,
        4.0 / 12.0,
    );
    let p = put.price(0.25).unwrap();
    assert_eq!(format!("{p:.2}"), "1.12");
    assert_close("put", p, 1.116_641_456_558_943, 1e-12);
    // At the money forward, the call is worth the same.
    let call = option(
        Model::Black76,
        OptionKind::Call,
        20.0,
        20.0,
        0.09,
        0.0,
        4.0 / 12.0,
    );
    assert_close("call", call.price(0.25).unwrap(), p, 1e-14);
}

/// `N` against 20-digit values (mpmath `ncdf`), relative error within the documented `8·2^−53` (the big-integer
/// comparison over the whole range is in `normal/tests.rs`).
#[test]
fn normal_cdf_matches_reference_values() {
    let cases = [
        (0.0, 0.5),
        (1.96, 0.975_002_104_851_779_6),
        (-1.0, 0.158_655_253_931_457_05),
        (3.0, 0.998_650_101_968_369_9),
        (-5.0, 2.866_515_718_791_939e-7),
        (-10.0, 7.619_853_024_160_526e-24),
        (-20.0, 2.753_624_118_606_233_7e-89),
        (-37.0, 5.725_571_222_524_577e-300),
    ];
    for (x, expected) in cases {
        let got = normal_cdf(x);
        let relative = ((got - expected) / expected).abs();
        let bound = 4.0 * f64::EPSILON;
        assert!(
            relative <= bound,
            "N({x}) = {got:e}, expected {expected:e}: relative error {relative:e} above {bound:e}"
        );
    }
    assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
    assert_eq!(normal_cdf(f64::INFINITY), 1.0);
    assert_close("n(0)", normal_pdf(0.0), 0.398_942_280_401_432_7, 1e-17);
}

// ----- parity and Greeks -----------------------------------------------------------------------------------------

/// `c − p = S·e^(−qT) − K·e^(−rT)` (Black-Scholes) and `c − p = e^(−rT)·(F − K)` (Black-76), on random inputs.
#[test]
fn put_call_parity() {
    let mut rng = Rng::new(seed("put_call_parity", 4_001));
    for case in 0..20_000 {
        let model = rng.model();
        let inputs = random_inputs(&mut rng, model, OptionKind::Call);
        let vol = rng.log_uniform(0.01, 3.0);
        let call = EuropeanOption::new(inputs).unwrap();
        let put = EuropeanOption::new(OptionInputs {
            kind: OptionKind::Put,
            ..inputs
        })
        .unwrap();
        let OptionInputs {
            underlying: u,
            strike: k,
            rate: r,
            dividend_yield: q,
            expiry_years: t,
            ..
        } = inputs;
        let expected = match model {
            Model::BlackScholes => u * (-q * t).exp() - k * (-r * t).exp(),
            Model::Black76 => (-r * t).exp() * (u - k),
        };
        let c = call.price(vol).unwrap();
        let p = put.price(vol).unwrap();
        assert!(c >= 0.0 && p >= 0.0, "case {case}: {inputs:?} vol {vol}");
        assert_close(
            &format!("case {case}: c - p for {inputs:?} vol {vol}"),
            c - p,
            expected,
            1e-12 * (u + k),
        );
    }
}

/// Every Greek against a central finite difference of the price (gamma: of the analytic delta, itself checked),
/// for both models and kinds, on random inputs.
#[test]
fn greeks_match_central_finite_differences() {
    let mut rng = Rng::new(seed("greeks_match_central_finite_differences", 4_002));
    for case in 0..4_000 {
        let model = rng.model();
        let kind = rng.kind();
        let inputs = random_inputs(&mut rng, model, kind);
        let vol = rng.log_uniform(0.1, 1.5);
        let at = |inputs: OptionInputs, vol: f64| {
            EuropeanOption::new(inputs).unwrap().greeks(vol).unwrap()
        };
        let greeks = at(inputs, vol);
        let u = inputs.underlying;
        let what = |greek: &str| format!("case {case}: {greek} of {inputs:?} vol {vol}");
        // Relative tolerance against |greek| + a natural scale of the greek.
        let check = |greek: &str, actual: f64, difference: f64, scale: f64| {
            assert_close(
                &what(greek),
                actual,
                difference,
                1e-7 * (actual.abs() + scale),
            );
        };

        let h = 1e-5 * u;
        let up = at(
            OptionInputs {
                underlying: u + h,
                ..inputs
            },
            vol,
        );
        let down = at(
            OptionInputs {
                underlying: u - h,
                ..inputs
            },
            vol,
        );
        check(
            "delta",
            greeks.delta,
            (up.price - down.price) / (2.0 * h),
            1.0,
        );
        check(
            "gamma",
            greeks.gamma,
            (up.delta - down.delta) / (2.0 * h),
            1.0 / u,
        );

        let h = 1e-5;
        let difference = (at(inputs, vol + h).price - at(inputs, vol - h).price) / (2.0 * h);
        check("vega", greeks.vega, difference, u);

        let t = inputs.expiry_years;
        let h = 1e-5 * t;
        let later = at(
            OptionInputs {
                expiry_years: t - h,
                ..inputs
            },
            vol,
        );
        let earlier = at(
            OptionInputs {
                expiry_years: t + h,
                ..inputs
            },
            vol,
        );
        // Theta: the change as time passes, i.e. as the time to expiry shrinks.
        check(
            "theta",
            greeks.theta,
            (later.price - earlier.price) / (2.0 * h),
            u,
        );

        let h = 1e-5;
        let r = inputs.rate;
        let up = at(
            OptionInputs {
                rate: r + h,
                ..inputs
            },
            vol,
        );
        let down = at(
            OptionInputs {
                rate: r - h,
                ..inputs
            },
            vol,
        );
        check(
            "rho",
            greeks.rho,
            (up.price - down.price) / (2.0 * h),
            u * t,
        );
    }
}

/// Signs and ranges every Greek must respect: gamma and vega > 0, call delta in [0, e^((b−r)T)], put delta in
/// [−e^((b−r)T), 0], price between the no-arbitrage bounds.
#[test]
fn greeks_respect_their_bounds() {
    let mut rng = Rng::new(seed("greeks_respect_their_bounds", 4_003));
    for case in 0..10_000 {
        let model = rng.model();
        let kind = rng.kind();
        let inputs = random_inputs(&mut rng, model, kind);
        let vol = rng.log_uniform(0.01, 3.0);
        let option = EuropeanOption::new(inputs).unwrap();
        let g = option.greeks(vol).unwrap();
        let (lower, _, upper, _) = option.price_bounds();
        let carry_discount = option.carry_discount_factor;
        let context = format!("case {case}: {inputs:?} vol {vol}: {g:?}");
        assert!(g.gamma >= 0.0 && g.vega >= 0.0, "{context}");
        assert!(
            g.price >= lower - 1e-12 * upper && g.price <= upper,
            "{context}"
        );
        match kind {
            OptionKind::Call => assert!(g.delta >= 0.0 && g.delta <= carry_discount, "{context}"),
            OptionKind::Put => assert!(g.delta <= 0.0 && g.delta >= -carry_discount, "{context}"),
        }
        assert_eq!(g.price, option.price(vol).unwrap(), "{context}");
    }
}

/// The pricer computes `e^(−d²/2)` once, at the smaller of `|d1|`, `|d2|`, and derives the other through
/// `d1² − d2² = 2·ln(F/K)`. Against evaluating `N(w·d1)`, `N(w·d2)` and `n(d1)` each on its own (each with its own
/// `exp`), at the same `d1` and `d2`: the legs and the density agree to `(8 + |ln(F/K)| + (σ√T)² + d²)·2^−52`
/// relative, `d` the one of `d1`, `d2` nearer 0. The identity holds for the exact `d1`, `d2`; the rounding of
/// `d1 = ln(F/K)/(σ√T) + σ√T/2` and `d2 = d1 − σ√T` moves it by about that much, which is the same order as the
/// effect of that rounding on `N` itself (`N(d)` moves by `|d|·δ` relative when `d` moves by `δ`). Random
/// inputs from one hour to ten years, strikes up to 20 standard deviations either side (deep out of the money,
/// where the legs are tiny and only relative accuracy means anything).
#[test]
fn shared_gaussian_factor_agrees_with_separate_evaluation() {
    let mut rng = Rng::new(seed(
        "shared_gaussian_factor_agrees_with_separate_evaluation",
        4_008,
    ));
    let mut worst = 0.0f64;
    for case in 0..20_000 {
        let model = rng.model();
        let kind = rng.kind();
        let mut inputs = random_inputs(&mut rng, model, kind);
        inputs.expiry_years = rng.log_uniform(ONE_HOUR_YEARS, 10.0);
        let vol = rng.log_uniform(0.01, 3.0);
        let total_std_dev = vol * inputs.expiry_years.sqrt();
        let forward = EuropeanOption::new(inputs).unwrap().forward();
        inputs.strike = strike_for_d1(forward, rng.uniform(-20.0, 20.0), total_std_dev);
        let option = EuropeanOption::new(inputs).unwrap();
        let legs = option.legs(total_std_dev);
        let w = kind.sign();
        let x = option.log_moneyness;
        let d1 = x / total_std_dev + 0.5 * total_std_dev;
        let d2 = d1 - total_std_dev;
        let underlying_discounted = inputs.underlying * option.carry_discount_factor;
        let strike_discounted = inputs.strike * option.discount_factor;
        let separate = [
            (
                "N(w·d1) leg",
                legs.underlying_leg,
                underlying_discounted * normal_cdf(w * d1),
            ),
            (
                "N(w·d2) leg",
                legs.strike_leg,
                strike_discounted * normal_cdf(w * d2),
            ),
            ("n(d1)", FRAC_1_SQRT_2PI * legs.gaussian_d1, normal_pdf(d1)),
        ];
        let units = 8.0 + x.abs() + total_std_dev * total_std_dev + (d1 * d1).min(d2 * d2);
        for (what, shared, expected) in separate {
            if expected < f64::MIN_POSITIVE {
                // Subnormal or 0: no relative accuracy to speak of, either way.
                assert!(
                    shared < 1e-290,
                    "case {case}: {what} {shared:e} for {expected:e}"
                );
                continue;
            }
            let relative_units = ((shared - expected) / expected).abs() / f64::EPSILON;
            worst = worst.max(relative_units / units);
            assert!(
                relative_units <= units,
                "case {case}: {inputs:?} vol {vol}: {what} shared {shared:e}, separate {expected:e}: \
                 {relative_units:.1} units of 2^-52, above {units:.1}"
            );
        }
    }
    println!(
        "shared_gaussian_factor_agrees_with_separate_evaluation: worst error {worst:.3} of the tolerance"
    );
}

// ----- monotonicity ----------------------------------------------------------------------------------------------

/// The price strictly increases with volatility (vega > 0), for both models and kinds.
#[test]
fn price_increases_with_volatility() {
    let mut rng = Rng::new(seed("price_increases_with_volatility", 4_004));
    for case in 0..10_000 {
        let model = rng.model();
        let kind = rng.kind();
        let inputs = random_inputs(&mut rng, model, kind);
        let option = EuropeanOption::new(inputs).unwrap();
        let low = rng.log_uniform(0.05, 1.0);
        let high = low * rng.uniform(1.01, 3.0);
        let (p_low, p_high) = (option.price(low).unwrap(), option.price(high).unwrap());
        let context =
            format!("case {case}: {inputs:?}: price {p_high} at vol {high}, {p_low} at vol {low}");
        // The price is a difference of two legs (S·e^(−qT)·N(d1) and K·e^(−rT)·N(d2) for a call), so it is exact
        // to a few rounding units of their size: never lower beyond that, strictly higher wherever the change is
        // well above it.
        let legs = inputs.underlying * option.carry_discount_factor
            + inputs.strike * option.discount_factor;
        assert!(p_high >= p_low - 4.0 * f64::EPSILON * legs, "{context}");
        let vega_low = option.greeks(low).unwrap().vega;
        if vega_low * (high - low) > 1e-12 * legs {
            assert!(p_high > p_low, "{context}");
        }
    }
}

/// More time to expiry is worth more where no carry or discounting works against it: with `r = q = 0` (both
/// models, both kinds: the price depends on `σ√T` only) and for Black-Scholes calls with `q = 0`, `r >= 0`. Theta is
/// then <= 0. (With a yield or a positive rate, deep in-the-money calls or puts can lose value with time.)
#[test]
fn price_increases_with_time_without_opposing_carry() {
    let mut rng = Rng::new(seed(
        "price_increases_with_time_without_opposing_carry",
        4_005,
    ));
    for case in 0..10_000 {
        let model = rng.model();
        let no_carry = rng.next_u64() & 1 == 0;
        let kind = if no_carry {
            rng.kind()
        } else {
            OptionKind::Call
        };
        let mut inputs = random_inputs(&mut rng, model, kind);
        inputs.dividend_yield = 0.0;
        if no_carry {
            inputs.rate = 0.0;
        } else {
            inputs.model = Model::BlackScholes;
            inputs.rate = inputs.rate.abs();
        }
        let vol = rng.log_uniform(0.05, 1.5);
        let short = EuropeanOption::new(inputs).unwrap();
        let long = EuropeanOption::new(OptionInputs {
            expiry_years: inputs.expiry_years * rng.uniform(1.01, 3.0),
            ..inputs
        })
        .unwrap();
        let (p_short, p_long) = (short.price(vol).unwrap(), long.price(vol).unwrap());
        // Within rounding of the legs (see price_increases_with_volatility): deep in the money, the time value can
        // change by less than one rounding unit of the price.
        let legs =
            inputs.underlying * short.carry_discount_factor + inputs.strike * short.discount_factor;
        assert!(
            p_long >= p_short - 4.0 * f64::EPSILON * legs,
            "case {case}: {inputs:?} vol {vol}: longer expiry {:?} priced {p_long} below {p_short}",
            long.inputs().expiry_years
        );
        assert!(
            short.greeks(vol).unwrap().theta <= 0.0,
            "case {case}: {inputs:?} vol {vol}"
        );
    }
}

// ----- implied volatility ----------------------------------------------------------------------------------------

const ONE_HOUR_YEARS: f64 = 1.0 / (365.0 * 24.0);

/// How well a price determines its volatility, relative: `1e-10`, plus 64 rounding units of the price turned into
/// volatility (`ε·scale / (vega·σ)`). The scale is the price out of the money; in the money it is the size of the
/// two legs (`S·e^(−qT) + K·e^(−rT)`), because the price's own rounding is that large there (it is the difference
/// of the legs). The term matters only deep in the money, where the time value is a small part of the price.
fn vol_tolerance(option: &EuropeanOption, vol: f64) -> f64 {
    let g = option.greeks(vol).unwrap();
    let inputs = option.inputs();
    let in_the_money = match inputs.kind {
        OptionKind::Call => option.forward() > inputs.strike,
        OptionKind::Put => option.forward() < inputs.strike,
    };
    let scale = if in_the_money {
        option.discount_factor() * (option.forward() + inputs.strike)
    } else {
        g.price
    };
    1e-10 + 64.0 * f64::EPSILON * scale / (g.vega * vol)
}

/// `d1` at which a Black-Scholes call with `q = 0` has the given delta: `N⁻¹(delta)`. 0.01 → −2.3263478740408408
/// (mpmath `ninv`-style values, to 16 digits).
const D1_BY_CALL_DELTA: [(f64, f64); 9] = [
    (0.01, -2.326_347_874_040_840_8),
    (0.05, -1.644_853_626_951_472_2),
    (0.10, -1.281_551_565_544_600_4),
    (0.25, -0.674_489_750_196_081_7),
    (0.50, 0.0),
    (0.75, 0.674_489_750_196_081_7),
    (0.90, 1.281_551_565_544_600_4),
    (0.95, 1.644_853_626_951_472_2),
    (0.99, 2.326_347_874_040_840_8),
];

/// The strike at which `d1` takes the given value: `ln(F/K) = d1·σ√T − σ²T/2`.
fn strike_for_d1(forward: f64, d1: f64, total_std_dev: f64) -> f64 {
    forward * (0.5 * total_std_dev * total_std_dev - d1 * total_std_dev).exp()
}

/// Price at a known volatility, then solve back: every model, kind, expiry from one hour to two years, volatility
/// from 5 % to 200 %, and strikes from the 0.01-delta call (deep out of the money) to the 0.99-delta call (deep in
/// the money, which is the 0.01-delta put). The solved volatility agrees to 1e-10 relative, plus what the price's
/// rounding allows (see [`vol_tolerance`]).
#[test]
fn implied_vol_round_trips_on_a_grid() {
    let expiries = [ONE_HOUR_YEARS, 1.0 / 365.0, 7.0 / 365.0, 0.25, 1.0, 2.0];
    let vols = [0.05, 0.2, 0.8, 2.0];
    let mut worst = 0.0f64;
    let mut n_cases = 0;
    for model in [Model::BlackScholes, Model::Black76] {
        for kind in [OptionKind::Call, OptionKind::Put] {
            for expiry_years in expiries {
                for vol in vols {
                    for (delta, d1) in D1_BY_CALL_DELTA {
                        let (underlying, rate) = (100.0, 0.05);
                        let dividend_yield = match model {
                            Model::BlackScholes => 0.02,
                            Model::Black76 => 0.0,
                        };
                        let forward = underlying * ((rate - dividend_yield) * expiry_years).exp();
                        let forward = if model == Model::Black76 {
                            underlying
                        } else {
                            forward
                        };
                        let strike = strike_for_d1(forward, d1, vol * expiry_years.sqrt());
                        let option = option(
                            model,
                            kind,
                            underlying,
                            strike,
                            rate,
                            dividend_yield,
                            expiry_years,
                        );
                        let price = option.price(vol).unwrap();
                        let context = format!(
                            "{} {} call-delta {delta} T {expiry_years} vol {vol}: strike {strike} price {price:e}",
                            model.name(),
                            kind.name()
                        );
                        let solved = option
                            .implied_vol(price)
                            .unwrap_or_else(|e| panic!("{context}: {e}"));
                        let relative = ((solved - vol) / vol).abs();
                        worst = worst.max(relative);
                        let tolerance = vol_tolerance(&option, vol);
                        assert!(
                            relative <= tolerance,
                            "{context}: solved {solved}, relative error {relative:e} above {tolerance:e}"
                        );
                        n_cases += 1;
                    }
                }
            }
        }
    }
    println!("implied_vol_round_trips_on_a_grid: {n_cases} cases, worst relative error {worst:e}");
}

/// The two cases the issue names, on their own: a 0.01-delta call and a one-hour option.
#[test]
fn implied_vol_deep_out_of_the_money_and_one_hour() {
    // 0.01-delta BTC call, one week, 60 % vol: priced at a few dollars on a 60,000 underlying.
    let total = 0.6 * (7.0f64 / 365.0).sqrt();
    let strike = strike_for_d1(60_000.0, D1_BY_CALL_DELTA[0].1, total);
    let deep = option(
        Model::Black76,
        OptionKind::Call,
        60_000.0,
        strike,
        0.0,
        0.0,
        7.0 / 365.0,
    );
    let greeks = deep.greeks(0.6).unwrap();
    assert_close("delta", greeks.delta, 0.01, 1e-12);
    assert_close(
        "implied vol",
        deep.implied_vol(greeks.price).unwrap(),
        0.6,
        1e-10,
    );
    // One hour to expiry, 0.5 % out of the money, 40 % vol.
    let hour = option(
        Model::BlackScholes,
        OptionKind::Put,
        100.0,
        99.5,
        0.05,
        0.0,
        ONE_HOUR_YEARS,
    );
    let price = hour.price(0.4).unwrap();
    assert!(price > 0.0 && price < 0.1, "{price}");
    assert_close("implied vol", hour.implied_vol(price).unwrap(), 0.4, 1e-10);
}

/// Round trips on random inputs, expiries from one hour to ten years, volatilities from 1 % to 500 %, strikes up to
/// five standard deviations either side. Prices are quoted on the out-of-the-money side when that is where the time
/// value is (as markets quote); in-the-money prices are checked too where the time value is at least 1e-6 of the
/// price.
#[test]
fn implied_vol_round_trips_on_random_inputs() {
    let mut rng = Rng::new(seed("implied_vol_round_trips_on_random_inputs", 4_006));
    let mut worst = 0.0f64;
    for case in 0..20_000 {
        let model = rng.model();
        let kind = rng.kind();
        let mut inputs = random_inputs(&mut rng, model, kind);
        inputs.expiry_years = rng.log_uniform(ONE_HOUR_YEARS, 10.0);
        let vol = rng.log_uniform(0.01, 5.0);
        let total = vol * inputs.expiry_years.sqrt();
        let forward = EuropeanOption::new(inputs).unwrap().forward();
        inputs.strike = strike_for_d1(forward, rng.uniform(-5.0, 5.0), total);
        let option = EuropeanOption::new(inputs).unwrap();
        let price = option.price(vol).unwrap();
        let (lower, _, _, _) = option.price_bounds();
        if price - lower < 1e-6 * price || price <= 0.0 {
            continue;
        }
        let context = format!("case {case}: {inputs:?} vol {vol} price {price:e}");
        let solved = option
            .implied_vol(price)
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        let relative = ((solved - vol) / vol).abs();
        worst = worst.max(relative);
        let tolerance = vol_tolerance(&option, vol);
        assert!(
            relative <= tolerance,
            "{context}: solved {solved}, relative error {relative:e} above {tolerance:e}"
        );
    }
    println!("implied_vol_round_trips_on_random_inputs: worst relative error {worst:e}");
}

fn hull_call() -> EuropeanOption {
    option(
        Model::BlackScholes,
        OptionKind::Call,
        42.0,
        40.0,
        0.10,
        0.0,
        0.5,
    )
}

/// Prices no volatility fits are refused with the rule they break.
#[test]
fn implied_vol_refuses_prices_outside_the_bounds() {
    let call = hull_call();
    // Lower bound: 42 − 40·e^(−0.05) = 3.9508.
    let lower = 42.0 - 40.0 * (-0.05f64).exp();
    for price in [0.0, 1.0, lower - 1e-9, lower] {
        let error = call.implied_vol(price).unwrap_err();
        assert!(
            matches!(error, OptionError::PriceNotAboveLowerBound { .. }),
            "{price}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("max(S·e^(-qT) - K·e^(-rT), 0)"),
            "{message}"
        );
        assert!(message.contains("no positive volatility fits"), "{message}");
    }
    // Upper bound: the spot (q = 0).
    for price in [42.0, 43.0, 1e300] {
        let error = call.implied_vol(price).unwrap_err();
        assert!(
            matches!(error, OptionError::PriceNotBelowUpperBound { .. }),
            "{price}: {error:?}"
        );
        assert!(error.to_string().contains("S·e^(-qT)"), "{error}");
    }
    // An out-of-the-money put at zero: exactly its lower bound.
    let put = option(
        Model::Black76,
        OptionKind::Put,
        100.0,
        80.0,
        0.03,
        0.0,
        0.25,
    );
    let error = put.implied_vol(0.0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "price 0 is not above the lower bound 0 (e^(-rT)·max(K - F, 0)): no positive volatility fits"
    );
    let bound = 80.0 * (-0.03f64 * 0.25).exp();
    assert!(matches!(
        put.implied_vol(bound).unwrap_err(),
        OptionError::PriceNotBelowUpperBound { .. }
    ));
    // Not a price at all.
    for price in [f64::NAN, f64::INFINITY, -1.0] {
        let error = call.implied_vol(price).unwrap_err();
        assert!(
            matches!(error, OptionError::Input { field: "price", .. }),
            "{price}: {error:?}"
        );
    }
}

/// Where vega vanishes to within rounding the price does not determine the volatility: refused, not guessed.
#[test]
fn implied_vol_refuses_where_vega_vanishes() {
    let call = hull_call();
    // A few rounding units below the upper bound (42): every volatility above ~15 prices there.
    let near_upper = 42.0 * (1.0 - 4.0 * f64::EPSILON);
    let error = call.implied_vol(near_upper).unwrap_err();
    assert!(
        matches!(error, OptionError::VegaVanishes { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("vega is zero to within rounding"),
        "{error}"
    );
    // A call 60 % in the money with one hour left: its time value at 20 % vol is far below one rounding unit of
    // the price, so the price carries no volatility.
    let deep = option(
        Model::BlackScholes,
        OptionKind::Call,
        100.0,
        40.0,
        0.0,
        0.0,
        ONE_HOUR_YEARS,
    );
    let price = deep.price(0.2).unwrap();
    assert_eq!(price, 60.0);
    assert!(matches!(
        deep.implied_vol(60.0 + 1e-13).unwrap_err(),
        OptionError::VegaVanishes { .. } | OptionError::PriceNotAboveLowerBound { .. }
    ));
}

// ----- input validation ------------------------------------------------------------------------------------------

fn hull_inputs() -> OptionInputs {
    OptionInputs {
        model: Model::BlackScholes,
        kind: OptionKind::Call,
        underlying: 42.0,
        strike: 40.0,
        rate: 0.10,
        dividend_yield: 0.0,
        expiry_years: 0.5,
    }
}

/// Each bad input is refused with its name and rule; nothing panics.
#[test]
fn invalid_inputs_are_refused_by_name() {
    let check = |inputs: OptionInputs, expected: &str| {
        let error = EuropeanOption::new(inputs).unwrap_err();
        assert_eq!(error.to_string(), expected, "{inputs:?}");
    };
    let base = hull_inputs();
    check(
        OptionInputs {
            underlying: -1.0,
            ..base
        },
        "spot must be a finite number > 0, got -1",
    );
    check(
        OptionInputs {
            underlying: f64::NAN,
            ..base
        },
        "spot must be a finite number > 0, got NaN",
    );
    check(
        OptionInputs {
            model: Model::Black76,
            underlying: 0.0,
            ..base
        },
        "forward must be a finite number > 0, got 0",
    );
    check(
        OptionInputs {
            strike: -40.0,
            ..base
        },
        "strike must be a finite number > 0, got -40",
    );
    check(
        OptionInputs {
            rate: f64::INFINITY,
            ..base
        },
        "rate must be a finite number, got inf",
    );
    check(
        OptionInputs {
            dividend_yield: f64::NEG_INFINITY,
            ..base
        },
        "dividend_yield must be a finite number, got -inf",
    );
    check(
        OptionInputs {
            expiry_years: 0.0,
            ..base
        },
        "expiry_years must be a finite number > 0, got 0",
    );
    check(
        OptionInputs {
            expiry_years: -0.5,
            ..base
        },
        "expiry_years must be a finite number > 0, got -0.5",
    );
    check(
        OptionInputs { model: Model::Black76, dividend_yield: 0.03, ..base },
        "dividend_yield must be 0 for black-76 (the forward already carries the underlying's yield), got 0.03",
    );
    check(
        OptionInputs { rate: -1000.0, expiry_years: 1.0, ..base },
        "the discount factor e^(-rT) is not a finite number for these inputs (f64 overflow); the inputs are out of \
         range",
    );
    let call = EuropeanOption::new(base).unwrap();
    for vol in [0.0, -0.2, f64::NAN, f64::INFINITY] {
        let error = call.greeks(vol).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("vol must be a finite number > 0, got {vol}")
        );
        assert_eq!(call.price(vol).unwrap_err().to_string(), error.to_string());
    }
}

/// Extreme but valid inputs give finite results or a clear error, never a panic or a NaN.
#[test]
fn extreme_inputs_never_panic_or_return_nan() {
    let mut rng = Rng::new(seed("extreme_inputs_never_panic_or_return_nan", 4_007));
    for _ in 0..20_000 {
        let inputs = OptionInputs {
            model: rng.model(),
            kind: rng.kind(),
            underlying: rng.log_uniform(1e-200, 1e200),
            strike: rng.log_uniform(1e-200, 1e200),
            rate: rng.uniform(-50.0, 50.0),
            dividend_yield: 0.0,
            expiry_years: rng.log_uniform(1e-12, 1e4),
        };
        let Ok(option) = EuropeanOption::new(inputs) else {
            continue;
        };
        let vol = rng.log_uniform(1e-12, 1e4);
        if let Ok(g) = option.greeks(vol) {
            for value in [g.price, g.delta, g.gamma, g.vega, g.theta, g.rho] {
                assert!(value.is_finite(), "{inputs:?} vol {vol}: {g:?}");
            }
            if let Ok(solved) = option.implied_vol(g.price) {
                assert!(
                    solved.is_finite() && solved > 0.0,
                    "{inputs:?} vol {vol}: {solved}"
                );
            }
        }
    }
}
