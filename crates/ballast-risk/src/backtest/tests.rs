//! Tests of the backtest statistics against values computed by hand (Python's `math`, quoted), the Basel table, the
//! edge cases, a property test that no input gives NaN, and a rolling backtest on a seeded normal sample.

use super::*;
use crate::data::ReturnKind;
use crate::random::NormalStream;
use proptest::prelude::*;

fn close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} ± {tolerance}"
    );
}

#[test]
fn kupiec_by_hand() {
    // 5 breaches in 250 at 99 %: -2·[245·ln 0.99 + 5·ln 0.01 - 245·ln 0.98 - 5·ln 0.02] = 1.956809788230622,
    // p = erfc(sqrt(LR/2)) = 0.16185491719604272.
    let (lr, p) = kupiec(250, 5, 0.99).unwrap();
    close("LR", lr, 1.956_809_788_230_622, 1e-12);
    close("p", p, 0.161_854_917_196_042_72, 1e-12);
    // No breach: only the first term is left, -2·250·ln 0.99 = 5.025167926750726, p = 0.02498150305344971.
    let (lr, p) = kupiec(250, 0, 0.99).unwrap();
    close("LR, no breach", lr, 5.025_167_926_750_726, 1e-12);
    close("p, no breach", p, 0.024_981_503_053_449_71, 1e-12);
    // Exactly the expected rate: LR = 0, p = 1.
    let (lr, p) = kupiec(1000, 10, 0.99).unwrap();
    close("LR at the expected rate", lr, 0.0, 1e-9);
    close("p at the expected rate", p, 1.0, 1e-6);
    // Every forecast breached: -2·n·ln q, finite.
    let (lr, p) = kupiec(10, 10, 0.99).unwrap();
    close("LR, all breaches", lr, -20.0 * 0.01f64.ln(), 1e-12);
    assert!((0.0..1e-10).contains(&p), "{p}");
}

#[test]
fn christoffersen_by_hand() {
    // 0 1 1 0 0 0 1 0: n00 = 2, n01 = 2, n10 = 2, n11 = 1; pi = 3/7, pi01 = 1/2, pi11 = 1/3.
    // LR = 0.1964510115581639, p = 0.6576008676133728.
    let sequence = [false, true, true, false, false, false, true, false];
    let (lr, p) = christoffersen(&sequence);
    close("LR", lr, 0.196_451_011_558_163_9, 1e-12);
    close("p", p, 0.657_600_867_613_372_8, 1e-12);
    // No breach at all, all breaches, a single forecast: no evidence of clustering.
    for sequence in [vec![false; 100], vec![true; 5], vec![true], vec![]] {
        assert_eq!(christoffersen(&sequence), (0.0, 1.0), "{sequence:?}");
    }
    // Breaches in one cluster: strong dependence.
    let mut clustered = vec![false; 240];
    clustered.extend([true; 10]);
    let (lr, p) = christoffersen(&clustered);
    assert!(lr > 30.0 && p < 1e-6, "{lr} {p}");
}

#[test]
fn basel_table_250_days_at_99() {
    // Cumulative probabilities from the Basel Committee's 1996 table (and Python's binomial sums).
    let expected_cdf = [
        0.081_058_516_162_181_28,
        0.285_751_738_793_952_16,
        0.543_168_973_315_724_7,
        0.758_116_697_764_881_6,
        0.892_187_626_903_623_3,
        0.958_816_815_930_149_6,
        0.986_298_552_144_794_2,
        0.995_974_661_288_19,
        0.998_943_467_502_641,
        0.999_749_809_931_257_3,
        0.999_946_101_370_950_7,
    ];
    for (breaches, cdf) in expected_cdf.iter().enumerate() {
        let (zone, actual) = traffic_light(250, breaches, 0.99).unwrap();
        close(&format!("F({breaches})"), actual, *cdf, 1e-12);
        let expected_zone = match breaches {
            0..=4 => Zone::Green,
            5..=9 => Zone::Yellow,
            _ => Zone::Red,
        };
        assert_eq!(zone, expected_zone, "{breaches} breaches");
    }
    for breaches in 10..=250 {
        assert_eq!(traffic_light(250, breaches, 0.99).unwrap().0, Zone::Red);
    }
    // Other sizes and levels: 500 days at 99 % (5 expected) is green up to 8 (F(8) = 0.932), yellow from 9.
    assert_eq!(traffic_light(500, 8, 0.99).unwrap().0, Zone::Green);
    assert_eq!(traffic_light(500, 9, 0.99).unwrap().0, Zone::Yellow);
    // Zero breaches are green however few the forecasts (F(0) = 0.99 here).
    assert_eq!(traffic_light(1, 0, 0.99).unwrap().0, Zone::Green);
    assert_eq!(traffic_light(10, 1, 0.99).unwrap().0, Zone::Yellow);
    assert_eq!(traffic_light(1, 1, 0.99).unwrap().0, Zone::Red);
}

#[test]
fn evaluate_puts_it_together() {
    let mut breaches = vec![false; 250];
    for i in [10, 50, 51, 120, 200] {
        breaches[i] = true;
    }
    let s = evaluate(&breaches, 0.99).unwrap();
    assert_eq!((s.n_forecasts, s.breaches), (250, 5));
    close("expected", s.expected_breaches, 2.5, 1e-12);
    close("kupiec", s.kupiec_lr, 1.956_809_788_230_622, 1e-12);
    close(
        "cc",
        s.conditional_coverage_lr,
        s.kupiec_lr + s.christoffersen_lr,
        0.0,
    );
    close(
        "cc p",
        s.conditional_coverage_p,
        (-s.conditional_coverage_lr / 2.0).exp(),
        1e-15,
    );
    assert_eq!(s.zone, Zone::Yellow);
    assert!(evaluate(&[], 0.99).is_err());
    assert!(evaluate(&[true], 1.0).is_err());
}

proptest! {
    /// No count of breaches, no sequence and no level gives NaN or a p-value outside [0, 1].
    #[test]
    fn statistics_are_always_finite(
        sequence in proptest::collection::vec(any::<bool>(), 1..600),
        level in 0.5f64..0.9999,
    ) {
        let s = evaluate(&sequence, level).unwrap();
        for (name, lr, p) in [
            ("kupiec", s.kupiec_lr, s.kupiec_p),
            ("christoffersen", s.christoffersen_lr, s.christoffersen_p),
            ("cc", s.conditional_coverage_lr, s.conditional_coverage_p),
        ] {
            prop_assert!(lr.is_finite() && lr >= 0.0, "{} LR {}", name, lr);
            prop_assert!((0.0..=1.0).contains(&p), "{} p {}", name, p);
        }
        prop_assert!((0.0..=1.0).contains(&s.binomial_cdf));
    }
}

/// i.i.d. normal returns: the normal method's forecasts are right, so breaches come at about the expected rate and
/// the zone is green; a model that ignores half the volatility is red.
#[test]
fn rolling_on_a_seeded_normal_sample() {
    let seed = 99;
    println!("rolling_on_a_seeded_normal_sample: seed {seed}");
    let mut stream = NormalStream::new(seed, 0);
    let n = 1_250;
    let values: Vec<f64> = (0..n).map(|_| 0.02 * stream.normal()).collect();
    let end: Vec<i64> = (1..=n as i64).map(|i| i * 86_400).collect();
    let matrix = ReturnMatrix::new(end, values, 1, 86_400, ReturnKind::Simple).unwrap();
    let weights = Weights::new(&[1.0]).unwrap();
    let report = rolling(&matrix, &weights, &Method::Normal, 0.99, 250).unwrap();
    let s = report.statistics;
    assert_eq!(s.n_forecasts, 1_000);
    assert_eq!(report.points.len(), 1_000);
    // 10 expected, sd 3.1.
    assert!((3..=20).contains(&s.breaches), "{s:?}");
    assert_ne!(s.zone, Zone::Red, "{s:?}");
    // The same returns at half the scale for the forecast: rescale the data after the window instead.
    let mut values: Vec<f64> = matrix.values().to_vec();
    for v in &mut values[250..] {
        *v *= 2.0;
    }
    let doubled = ReturnMatrix::new(
        matrix.end_utc_s().to_vec(),
        values,
        1,
        86_400,
        ReturnKind::Simple,
    )
    .unwrap();
    let report = rolling(&doubled, &weights, &Method::Historical, 0.99, 250).unwrap();
    // The first forecasts see calm data and the storm breaks them often.
    assert!(report.statistics.breaches > 20, "{:?}", report.statistics);
    assert!(rolling(&matrix, &weights, &Method::Normal, 0.99, 1_250).is_err());
}
