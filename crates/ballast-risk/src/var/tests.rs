//! Tests of VaR and ES: type 7 quantiles computed by hand (as R's `quantile(type = 7)` gives them), normal closed
//! forms, and historical VaR of a large seeded normal sample against the normal closed form.
//!
//! The random test draws from SplitMix64 with a fixed seed, printed on every run; set `BALLAST_SEED` to change it.

use super::*;

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "got {actual}, expected {expected} ± {tolerance}"
    );
}

/// `quantile_type7(values, level)` is `expected` to 1e-12.
fn check_quantile(values: &[f64], level: f64, expected: f64) {
    close(quantile_type7(values, level).unwrap(), expected, 1e-12);
}

#[test]
fn type7_by_hand() {
    let one_to_ten: Vec<f64> = (1..=10).map(f64::from).collect();
    // h = 9·p: 8.1 -> 9 + 0.1; 4.5 -> 5 + 0.5; 0.09 -> 1 + 0.09; 8.91 -> 9 + 0.91.
    check_quantile(&one_to_ten, 0.9, 9.1);
    check_quantile(&one_to_ten, 0.5, 5.5);
    check_quantile(&one_to_ten, 0.01, 1.09);
    check_quantile(&one_to_ten, 0.99, 9.91);
    // R: quantile(c(3.1, -0.4, 7.2, 1.5, 2.8, 0, 5.5), c(.25, .5, .95, .99), type = 7)
    //    sorted -0.4 0 1.5 2.8 3.1 5.5 7.2, h = 6p: 1.5 -> 0.75; 3 -> 2.8; 5.7 -> 5.5 + 0.7·1.7 = 6.69;
    //    5.94 -> 5.5 + 0.94·1.7 = 7.098.
    let unsorted = [3.1, -0.4, 7.2, 1.5, 2.8, 0.0, 5.5];
    check_quantile(&unsorted, 0.25, 0.75);
    check_quantile(&unsorted, 0.5, 2.8);
    check_quantile(&unsorted, 0.95, 6.69);
    check_quantile(&unsorted, 0.99, 7.098);
    // One observation: every quantile is that observation. Ties: stays on the tie.
    check_quantile(&[0.3], 0.99, 0.3);
    check_quantile(&[1.0, 2.0, 2.0, 2.0, 3.0], 0.6, 2.0);
}

#[test]
fn historical_var_es() {
    let one_to_ten: Vec<f64> = (1..=10).map(f64::from).collect();
    let r = historical(&one_to_ten, 0.9).unwrap();
    close(r.var, 9.1, 1e-12);
    close(r.es, 10.0, 1e-12);
    // p = 0.7: h = 6.3, VaR = 7.3, tail {8, 9, 10}, ES = 9.
    let r = historical(&one_to_ten, 0.7).unwrap();
    close(r.var, 7.3, 1e-12);
    close(r.es, 9.0, 1e-12);
    // VaR on an order statistic belongs to the tail: p = 0.5 on 1..=5 gives VaR 3, ES mean(3, 4, 5) = 4.
    let r = historical(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.5).unwrap();
    close(r.var, 3.0, 1e-12);
    close(r.es, 4.0, 1e-12);
}

#[test]
fn normal_closed_form() {
    close(normal_quantile(0.99), 2.326_347_874, 1e-9);
    close(normal_quantile(0.975), 1.959_963_985, 1e-9);
    close(normal_quantile(0.5), 0.0, 1e-15);
    close(normal_quantile(0.01), -2.326_347_874, 1e-9);
    close(normal_quantile(1e-10), -6.361_340_902, 1e-8);
    let z = normal_quantile(0.99);
    close(normal_pdf(z) / 0.01, 2.665_214_220, 1e-9);

    let r = normal(0.0, 1.0, 0.99).unwrap();
    close(r.var, 2.326_347_874, 1e-9);
    close(r.es, 2.665_214_220, 1e-9);
    // Daily sigma 4 %, mean return +0.1 %: VaR = 0.04·2.326347874 - 0.001, ES = 0.04·2.665214220 - 0.001.
    let r = normal(0.001, 0.04, 0.99).unwrap();
    close(r.var, 0.04 * 2.326_347_874 - 0.001, 1e-10);
    close(r.es, 0.04 * 2.665_214_220 - 0.001, 1e-10);
    // p = 0.95: z = 1.644853627, n(z)/0.05 = 2.062712808.
    let r = normal(0.0, 1.0, 0.95).unwrap();
    close(r.var, 1.644_853_627, 1e-9);
    close(r.es, 2.062_712_808, 1e-9);
    // From losses -1, 1: mean loss 0, sample sd √2.
    let r = normal_from_losses(&[-1.0, 1.0], 0.99).unwrap();
    close(r.var, 2.0f64.sqrt() * 2.326_347_874, 1e-9);
}

#[test]
fn validation() {
    assert_eq!(
        historical(&[1.0], 1.0),
        Err(VarError::LevelOutOfRange { level: 1.0 })
    );
    assert_eq!(
        historical(&[1.0], 0.0),
        Err(VarError::LevelOutOfRange { level: 0.0 })
    );
    assert!(matches!(
        historical(&[1.0], f64::NAN),
        Err(VarError::LevelOutOfRange { .. })
    ));
    assert_eq!(
        historical(&[], 0.99),
        Err(VarError::ObservationCount { n: 0 })
    );
    assert_eq!(
        historical(&[1.0, f64::INFINITY], 0.99),
        Err(VarError::LossNotFinite {
            index: 1,
            value: f64::INFINITY
        })
    );
    assert_eq!(
        normal(0.0, -0.1, 0.99),
        Err(VarError::Parameter {
            name: "sigma",
            value: -0.1
        })
    );
    assert!(matches!(
        normal(f64::NAN, 0.1, 0.99),
        Err(VarError::Parameter {
            name: "mean_return",
            ..
        })
    ));
    assert_eq!(
        normal_from_losses(&[1.0], 0.99),
        Err(VarError::ObservationCount { n: 1 })
    );
    assert_eq!(
        VarError::LevelOutOfRange { level: 1.5 }.to_string(),
        "level 1.5 must be strictly between 0 and 1"
    );
    assert_eq!(
        VarError::LossNotFinite {
            index: 3,
            value: f64::NAN
        }
        .to_string(),
        "loss 3 is NaN, not a finite number"
    );
}

/// SplitMix64, as in the options tests: fully specified, so a seed reproduces the same stream everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1]: 53 random bits, shifted off zero.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Standard normal by Box-Muller (the cosine branch only).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[test]
fn historical_matches_normal_on_large_sample() {
    let seed = std::env::var("BALLAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_200_312u64);
    println!("historical_matches_normal_on_large_sample: seed {seed} (reproduce with BALLAST_SEED={seed})");
    let mut rng = Rng(seed);
    let (mean_return, sigma, n) = (0.0005, 0.02, 400_000);
    let losses: Vec<f64> = (0..n)
        .map(|_| -(mean_return + sigma * rng.normal()))
        .collect();
    let historical = historical(&losses, 0.99).unwrap();
    let exact = normal(mean_return, sigma, 0.99).unwrap();
    // Standard error of the 99 % sample quantile: sigma·sqrt(p(1-p)/n)/n(z) ≈ 0.02·1.57e-4/0.02665 ≈ 1.2e-4
    // (0.25 % of VaR); ES about as much. Allow 1.5 %, over five standard errors.
    close(historical.var, exact.var, 0.015 * exact.var);
    close(historical.es, exact.es, 0.015 * exact.es);
    let fitted = normal_from_losses(&losses, 0.99).unwrap();
    close(fitted.var, exact.var, 0.01 * exact.var);
}

// ----- moments, Student-t, Cornish-Fisher ---------------------------------------------------------------------------

#[test]
fn moments_by_hand() {
    // Python: mean 4, stdev 3.5355339059327378, g1 = 1.1384199576606167, g2 = -0.212.
    let m = moments(&[1.0, 2.0, 3.0, 4.0, 10.0]).unwrap();
    close(m.mean, 4.0, 1e-15);
    close(m.sd, 3.535_533_905_932_737_8, 1e-15);
    close(m.skewness, 1.138_419_957_660_616_7, 1e-14);
    close(m.excess_kurtosis, -0.212, 1e-14);
    assert_eq!(moments(&[2.0, 2.0, 2.0]), Err(VarError::ZeroSpread));
}

#[test]
fn student_t_quantiles() {
    // Closed forms: dof 1 is Cauchy, tan(pi·(p - 1/2)); dof 2 is (2p - 1)/sqrt(2p(1 - p)).
    for p in [0.9, 0.95, 0.99, 0.999, 0.01] {
        close(
            student_t_quantile(p, 1.0),
            (std::f64::consts::PI * (p - 0.5)).tan(),
            1e-9 * (std::f64::consts::PI * (p - 0.5)).tan().abs(),
        );
        close(
            student_t_quantile(p, 2.0),
            (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt(),
            1e-10,
        );
    }
    // Tables: t(0.99; 3) = 4.540702858698, t(0.99; 5) = 3.364929998907, t(0.975; 10) = 2.228138851986.
    close(student_t_quantile(0.99, 3.0), 4.540_702_858_698, 1e-9);
    close(student_t_quantile(0.99, 5.0), 3.364_929_998_907, 1e-9);
    close(student_t_quantile(0.975, 10.0), 2.228_138_851_986, 1e-9);
    // Large dof tends to the normal.
    close(student_t_quantile(0.99, 1e6), normal_quantile(0.99), 1e-5);
}

/// The t ES formula against the tail integral `∫_q^∞ x·g(x) dx / (1 - p)`, by Simpson's rule after `x = q/u`.
#[test]
fn student_t_es_is_the_tail_mean() {
    for (dof, level) in [(3.0, 0.99), (5.0, 0.975), (30.0, 0.99), (2.5, 0.95)] {
        let r = student_t(0.0, 1.0, dof, level).unwrap();
        let q = student_t_quantile(level, dof);
        close(r.var, q, 1e-12);
        let f = |u: f64| {
            if u == 0.0 {
                0.0
            } else {
                let x = q / u;
                x * student_t_density(x, dof) * q / (u * u)
            }
        };
        let steps = 20_000;
        let h = 1.0 / steps as f64;
        let mut integral = f(0.0) + f(1.0);
        for i in 1..steps {
            integral += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        integral *= h / 3.0;
        close(r.es, integral / (1.0 - level), 1e-6 * r.es);
    }
    // Location and scale: VaR = scale·q - location.
    let r = student_t(0.001, 0.02, 4.0, 0.99).unwrap();
    close(r.var, 0.02 * student_t_quantile(0.99, 4.0) - 0.001, 1e-15);
    assert!(student_t(0.0, 1.0, 2.0, 0.99).is_err());
    assert!(student_t(0.0, 1.0, 1001.0, 0.99).is_err());
}

/// A seeded Student-t sample (location 0.001, scale 0.02, 4 degrees of freedom: `z / sqrt(chi²_4 / 4)` from five
/// normals per draw). With n = 20,000 the standard error of the fitted dof is about 0.12 and of the scale about 1 %.
#[test]
fn student_t_fit_recovers_its_parameters() {
    let seed = 4_004;
    println!("student_t_fit_recovers_its_parameters: seed {seed}");
    let mut stream = crate::random::NormalStream::new(seed, 0);
    let sample: Vec<f64> = (0..20_000)
        .map(|_| {
            let z = stream.normal();
            let chi2: f64 = (0..4).map(|_| stream.normal().powi(2)).sum();
            0.001 + 0.02 * z / (chi2 / 4.0).sqrt()
        })
        .collect();
    let fit = fit_student_t(&sample).unwrap();
    println!("{fit:?}");
    close(fit.dof, 4.0, 0.5);
    close(fit.scale, 0.02, 0.0008);
    close(fit.location, 0.001, 0.0006);
    // A normal sample fits a large dof.
    let normal_sample: Vec<f64> = (0..20_000).map(|_| 0.01 * stream.normal()).collect();
    let fit = fit_student_t(&normal_sample).unwrap();
    assert!(fit.dof > 30.0, "{fit:?}");
    assert_eq!(
        fit_student_t(&[0.01; 5]),
        Err(VarError::ObservationCount { n: 5 })
    );
}

#[test]
fn cornish_fisher_without_skew_or_kurtosis_is_normal() {
    for level in [0.9, 0.95, 0.99, 0.999] {
        let cf = cornish_fisher(0.001, 0.03, 0.0, 0.0, level).unwrap();
        let normal = normal(0.001, 0.03, level).unwrap();
        close(cf.var, normal.var, 1e-15);
        close(cf.es, normal.es, 1e-15);
    }
}

/// ES is the mean of the Cornish-Fisher quantiles over the tail: the closed form against a midpoint sum over
/// `u = 1 - (1 - p)·v`. Negative skewness of returns fattens the loss tail; excess kurtosis fattens both.
#[test]
fn cornish_fisher_es_is_the_mean_tail_quantile() {
    for (skew, kurt, level) in [(-0.5, 3.0, 0.99), (0.3, 1.0, 0.975), (0.0, 5.0, 0.99)] {
        let r = cornish_fisher(0.0, 1.0, skew, kurt, level).unwrap();
        let s = -skew;
        let z_cf = |u: f64| {
            let z = normal_quantile(u);
            z + (z * z - 1.0) * s / 6.0 + (z.powi(3) - 3.0 * z) * kurt / 24.0
                - (2.0 * z.powi(3) - 5.0 * z) * s * s / 36.0
        };
        close(r.var, z_cf(level), 1e-12);
        let steps = 100_000;
        let mean = (0..steps)
            .map(|i| z_cf(1.0 - (1.0 - level) * (i as f64 + 0.5) / steps as f64))
            .sum::<f64>()
            / steps as f64;
        close(r.es, mean, 2e-4 * r.es);
        let normal = normal(0.0, 1.0, level).unwrap();
        if skew < 0.0 || kurt > 2.0 {
            assert!(r.var > normal.var && r.es > normal.es, "{r:?}");
        }
    }
}
