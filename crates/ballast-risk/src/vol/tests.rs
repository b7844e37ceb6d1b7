//! Tests of EWMA and GARCH(1,1): recursions by hand, forecasts against iteration, parameter recovery from seeded
//! simulations, and validation.
//!
//! Random tests draw from [`NormalStream`] with a fixed seed, printed on every run; set `BALLAST_SEED` to change it.

use super::*;

fn close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} ± {tolerance}"
    );
}

fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("BALLAST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("{test}: seed {seed} (reproduce with BALLAST_SEED={seed})");
    seed
}

#[test]
fn ewma_by_hand() {
    // Seed: mean of 1e-4, 4e-4, 9e-4 = 4.6666...e-4. Then s² <- 0.9·s² + 0.1·r².
    let returns = [0.01, -0.02, 0.03];
    let v = ewma_variances(&returns, 0.9).unwrap();
    let mut expected = 14e-4 / 3.0;
    close("seed", v[0], expected, 1e-18);
    for (i, r) in returns.iter().enumerate() {
        expected = 0.9 * expected + 0.1 * r * r;
        close("step", v[i + 1], expected, 1e-18);
    }
    let fit = ewma(&returns, 0.9).unwrap();
    assert_eq!(fit.next_variance, v[3]);
    assert_eq!(fit.n_observations, 3);
    close("horizon", fit.horizon_variance(24), 24.0 * v[3], 1e-18);
    // The seed uses the first 25 returns only.
    let mut long = vec![0.01; 25];
    long.push(1.0);
    let v = ewma_variances(&long, 0.94).unwrap();
    close("seed of 25", v[0], 1e-4, 1e-18);
}

#[test]
fn garch_recursion_and_likelihood_by_hand() {
    let model = Garch::new(1e-5, 0.1, 0.8).unwrap();
    let returns = [0.02, -0.01];
    let v = model.variances(&returns, 2.5e-4);
    // 1e-5 + 0.1·4e-4 + 0.8·2.5e-4 = 2.5e-4; then 1e-5 + 0.1·1e-4 + 0.8·2.5e-4 = 2.2e-4.
    close("v2", v[1], 2.5e-4, 1e-18);
    close("v3", v[2], 2.2e-4, 1e-18);
    let expected = -0.5
        * (2.0 * (2.0 * std::f64::consts::PI).ln()
            + (2.5e-4f64).ln()
            + 4e-4 / 2.5e-4
            + (2.5e-4f64).ln()
            + 1e-4 / 2.5e-4);
    close(
        "loglik",
        model.log_likelihood(&returns, 2.5e-4),
        expected,
        1e-12,
    );
    close("unconditional", model.unconditional_variance(), 1e-4, 1e-18);
}

#[test]
fn garch_forecasts_match_iterated_expectations() {
    let fit = GarchFit {
        model: Garch::new(2e-6, 0.08, 0.9).unwrap(),
        log_likelihood: 0.0,
        n_observations: 100,
        initial_variance: 1e-4,
        next_variance: 4e-4,
        evaluations: 0,
        converged: true,
    };
    // E[s²_(n+h+1)] = omega + (alpha + beta)·E[s²_(n+h)].
    let mut expected = 4e-4;
    let mut sum = 0.0;
    for h in 1..=50 {
        close(
            &format!("h = {h}"),
            fit.forecast_variance(h),
            expected,
            1e-15,
        );
        sum += expected;
        close(&format!("sum to {h}"), fit.horizon_variance(h), sum, 1e-14);
        expected = 2e-6 + 0.98 * expected;
    }
    close("h = 1", fit.forecast_variance(1), 4e-4, 0.0);
}

/// Simulates `n` returns of a GARCH(1,1) with omega = 2e-6, alpha = 0.08, beta = 0.9 (unconditional vol 1 % per bar,
/// persistence 0.98, a typical daily equity or crypto fit) and fits it back.
fn recover(n: usize, default_seed: u64, test: &str) -> (GarchFit, Garch) {
    let truth = Garch::new(2e-6, 0.08, 0.9).unwrap();
    let mut stream = NormalStream::new(seed(test, default_seed), 0);
    // A burn-in of 500 bars forgets the starting variance.
    let burned = truth.simulate(n + 500, 1e-4, &mut stream);
    let fit = fit_garch(&burned[500..]).unwrap();
    println!("{test}: {:?}", fit);
    (fit, truth)
}

/// 40,000 returns (0.2 s in debug). The asymptotic standard errors of this model's maximum-likelihood estimates
/// are, roughly, 0.20/sqrt(n) for alpha, 0.30/sqrt(n) for beta and 0.08/sqrt(n) for the persistence (inverse Fisher
/// information; at n = 1,000 that is about 0.02 and 0.03), so 0.001, 0.0015 and 0.0004 here. The tolerances are about
/// ten of them, wide enough that a failure means a wrong fit, not bad luck, and narrow enough to catch one.
#[test]
fn garch_recovers_known_parameters() {
    let (fit, truth) = recover(40_000, 20_240_101, "garch_recovers_known_parameters");
    assert!(fit.converged, "{fit:?}");
    close("alpha", fit.model.alpha, truth.alpha, 0.013);
    close("beta", fit.model.beta, truth.beta, 0.019);
    close("persistence", fit.model.persistence(), 0.98, 0.005);
    close(
        "unconditional vol",
        fit.model.unconditional_variance().sqrt(),
        0.01,
        0.001,
    );
}

/// 400,000 returns: the tolerances shrink with sqrt(n), to a third. About 2 s in debug: run it with `--ignored`.
#[test]
#[ignore]
fn garch_recovers_known_parameters_long() {
    let (fit, truth) = recover(400_000, 20_240_102, "garch_recovers_known_parameters_long");
    close("alpha", fit.model.alpha, truth.alpha, 0.0045);
    close("beta", fit.model.beta, truth.beta, 0.0065);
    close("persistence", fit.model.persistence(), 0.98, 0.0017);
}

#[test]
fn garch_fit_never_loses_to_the_truth_and_respects_constraints() {
    for (i, (omega, alpha, beta)) in [(1e-5, 0.05, 0.9), (5e-5, 0.2, 0.5), (1e-4, 0.0, 0.0)]
        .into_iter()
        .enumerate()
    {
        let truth = Garch::new(omega, alpha, beta).unwrap();
        let mut stream = NormalStream::new(seed("garch_fit_never_loses", 11 + i as u64), 0);
        let returns = truth.simulate(2_000, truth.unconditional_variance(), &mut stream);
        let fit = fit_garch(&returns).unwrap();
        let s2 = fit.initial_variance;
        assert!(
            fit.log_likelihood >= truth.log_likelihood(&returns, s2) - 1e-6,
            "{fit:?}"
        );
        let m = fit.model;
        assert!(m.omega > 0.0 && m.alpha >= 0.0 && m.beta >= 0.0 && m.persistence() < 1.0);
        // The warm start from the truth gets the same maximum.
        let warm = fit_garch_from(&returns, Some(&truth)).unwrap();
        close("warm start", warm.log_likelihood, fit.log_likelihood, 1e-4);
    }
}

#[test]
fn validation() {
    assert_eq!(
        ewma(&[0.01], 1.0),
        Err(VolError::Parameter {
            name: "lambda",
            value: 1.0,
            rule: "must be strictly between 0 and 1"
        })
    );
    assert_eq!(
        ewma(&[], 0.94),
        Err(VolError::ObservationCount { n: 0, min: 1 })
    );
    assert_eq!(ewma(&[0.0, 0.0], 0.94), Err(VolError::ZeroVariance));
    assert_eq!(
        fit_garch(&[0.01; 10]),
        Err(VolError::ObservationCount { n: 10, min: 30 })
    );
    let mut bad = vec![0.01; 40];
    bad[7] = f64::NAN;
    assert!(matches!(
        fit_garch(&bad),
        Err(VolError::ReturnNotFinite { index: 7, .. })
    ));
    assert!(Garch::new(0.0, 0.1, 0.8).is_err());
    assert!(Garch::new(1e-6, -0.1, 0.8).is_err());
    assert_eq!(
        Garch::new(1e-6, 0.3, 0.7).unwrap_err().to_string(),
        "alpha + beta = 1: must be < 1 (a stationary variance)"
    );
}
