//! Tests of the CSV loader, gaps, alignment and returns: the real Gemini file, and one short case per error rule.

use super::*;
use std::path::PathBuf;

fn shared_data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(file)
}

/// Writes `text` to a file named `name` in a fresh temporary directory (one per process and name, so tests running
/// in parallel do not meet), loads it, and removes the directory.
fn load_text(name: &str, text: &str) -> Result<PriceSeries, DataError> {
    let dir = std::env::temp_dir().join(format!(
        "ballast-risk-data-tests-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let result = load_csv(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

/// Loading `text` fails with exactly `expected`.
fn check_error(text: &str, expected: &str) {
    match load_text("btc.csv", text) {
        Ok(series) => panic!("expected error {expected:?}, loaded {} rows", series.len()),
        Err(error) => assert_eq!(error.to_string(), expected),
    }
}

const GEMINI_HEADER: &str = "datetime_utc,open,high,low,close,volume_btc\n";

fn t(text: &str) -> i64 {
    TimeFormat::DateTime.parse(text).unwrap()
}

#[test]
fn gemini_hourly_march_2020() {
    let series = load_csv(&shared_data("gemini_btcusd_1h_2020-03.csv")).unwrap();
    assert_eq!(series.name(), "gemini_btcusd_1h_2020-03.csv");
    assert_eq!(series.len(), 744);
    assert_eq!(series.interval_s(), 3600);
    assert_eq!(series.times_utc_s()[0], 1_583_020_800); // 2020-03-01T00:00:00Z
    assert_eq!(*series.times_utc_s().last().unwrap(), 1_585_695_600); // 2020-03-31T23:00:00Z
    assert_eq!(series.closes()[0], 8537.74);
    assert_eq!(*series.closes().last().unwrap(), 6428.54);
    let first = series.open_high_low().unwrap()[0];
    assert_eq!(
        first,
        OpenHighLow {
            open: 8525.13,
            high: 8610.38,
            low: 8525.13
        }
    );
    // 31 days × 24 hours = 744: the month is complete.
    assert!(series.gaps().is_empty(), "{:?}", series.gaps());
    assert_eq!(series.returns(1, ReturnKind::Log).unwrap().len(), 743);
    assert_eq!(series.returns(24, ReturnKind::Simple).unwrap().len(), 720);
}

#[test]
fn other_shared_formats_load() {
    let luna = load_csv(&shared_data(
        "coinmetrics_luna_referencerate_2022-03-01_2022-06-30.csv",
    ))
    .unwrap();
    assert_eq!(luna.len(), 122);
    assert_eq!(luna.interval_s(), DAY_S);
    assert!(luna.open_high_low().is_none());
    // Stamped with approx_close_date_utc: the first row is 2022-02-28.
    assert_eq!(
        luna.times_utc_s()[0],
        TimeFormat::Date.parse("2022-02-28").unwrap()
    );
    assert_eq!(luna.closes()[0], 90.7177924970709);

    let btc_daily = load_csv(&shared_data("binance_btcusdt_daily.csv")).unwrap();
    assert_eq!(btc_daily.interval_s(), DAY_S);
    // README: six days missing in 2026 (01-08, 01-20, 03-20..22, 03-25) in four runs.
    assert_eq!(btc_daily.n_missing(), 6);
    assert_eq!(btc_daily.gaps().len(), 4);
    let run = btc_daily.gaps()[2];
    assert_eq!(run.n_missing, 3);
    assert_eq!(
        run.after_utc_s,
        TimeFormat::Date.parse("2026-03-19").unwrap()
    );
    assert_eq!(
        run.before_utc_s,
        TimeFormat::Date.parse("2026-03-23").unwrap()
    );

    let btc_hourly =
        load_csv(&shared_data("binance_btcusdt_1h_2017-08-17_2022-10-11.csv")).unwrap();
    assert_eq!(btc_hourly.interval_s(), 3600);
    assert_eq!(btc_hourly.n_missing(), 127); // README: 127 hours missing over five years.

    let ftt = load_csv(&shared_data(
        "yahoo_ftt_usd_daily_2022-10-01_2022-12-22.csv",
    ))
    .unwrap();
    assert_eq!(ftt.len(), 83);
    assert!(ftt.gaps().is_empty());
}

#[test]
fn gaps_are_reported_and_break_returns() {
    let text = format!(
        "{GEMINI_HEADER}\
         2020-03-01T00:00:00Z,1,1,1,100,0\n\
         2020-03-01T01:00:00Z,1,1,1,110,0\n\
         2020-03-01T04:00:00Z,1,1,1,121,0\n\
         2020-03-01T05:00:00Z,1,1,1,133.1,0\n"
    );
    let series = load_text("gap.csv", &text).unwrap();
    assert_eq!(series.interval_s(), 3600);
    assert_eq!(
        series.gaps(),
        &[Gap {
            after_utc_s: t("2020-03-01T01:00:00Z"),
            before_utc_s: t("2020-03-01T04:00:00Z"),
            n_missing: 2
        }]
    );
    let returns = series.returns(1, ReturnKind::Simple).unwrap();
    // 01:00 -> 04:00 spans the gap: no return there.
    assert_eq!(returns.len(), 2);
    assert_eq!(returns[0].end_utc_s, t("2020-03-01T01:00:00Z"));
    assert!((returns[0].value - 0.1).abs() < 1e-12);
    assert_eq!(returns[1].end_utc_s, t("2020-03-01T05:00:00Z"));
    assert!((returns[1].value - 0.1).abs() < 1e-12);
    let log = series.returns(1, ReturnKind::Log).unwrap();
    assert!((log[0].value - 1.1f64.ln()).abs() < 1e-12);
    // k = 2 needs three contiguous samples; none exist across or beside the gap.
    assert!(series.returns(2, ReturnKind::Simple).unwrap().is_empty());
    assert_eq!(
        series
            .returns(0, ReturnKind::Simple)
            .unwrap_err()
            .to_string(),
        "gap.csv: return horizon k = 0 must be in 1..4"
    );
}

#[test]
fn align_and_restrict() {
    let a = load_text(
        "a.csv",
        "date,close\n2022-01-01,1\n2022-01-02,2\n2022-01-03,3\n2022-01-04,4\n",
    )
    .unwrap();
    let b = load_text(
        "b.csv",
        "date,close\n2022-01-02,5\n2022-01-04,7\n2022-01-05,8\n",
    )
    .unwrap();
    assert_eq!(b.interval_s(), DAY_S);
    assert_eq!(b.n_missing(), 1);
    let common = align(&[&a, &b]);
    let day = |s: &str| TimeFormat::Date.parse(s).unwrap();
    assert_eq!(common, vec![day("2022-01-02"), day("2022-01-04")]);
    let a_common = a.restrict_to(&common).unwrap();
    // The interval stays a day, so the two common dates are a gap apart and give no one-day return.
    assert_eq!(a_common.interval_s(), DAY_S);
    assert_eq!(a_common.n_missing(), 1);
    assert!(a_common.returns(1, ReturnKind::Simple).unwrap().is_empty());
    assert!(align(&[]).is_empty());
    assert_eq!(
        a.restrict_to(&[day("2022-01-09")]).unwrap_err().to_string(),
        format!(
            "a.csv: timestamp {} is not in the series",
            day("2022-01-09")
        )
    );
}

#[test]
fn crlf_and_column_order() {
    let series = load_text(
        "crlf.csv",
        "close,datetime_utc\r\n5,2020-03-01T00:00:00Z\r\n6,2020-03-01T00:05:00Z\r\n",
    )
    .unwrap();
    assert_eq!(series.interval_s(), 300);
    assert_eq!(series.closes(), &[5.0, 6.0]);
}

#[test]
fn csv_errors() {
    let row1 = "2020-03-01T00:00:00Z,1,1,1,100,0\n";
    check_error(
        "",
        "btc.csv line 1: header has no time column (datetime_utc, date or approx_close_date_utc)",
    );
    check_error(
        "datetime_utc,open\n",
        "btc.csv line 1: header has no price column (close or reference_rate_usd)",
    );
    check_error(
        GEMINI_HEADER,
        "btc.csv: 0 samples: at least 2 are needed to detect the sampling interval",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}"),
        "btc.csv: 1 samples: at least 2 are needed to detect the sampling interval",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}2020-03-01T01:00:00Z,1,1,1,abc,0\n"),
        "btc.csv line 3: close is not a number",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}2020-03-01T01:00:00Z,1,1,1,-3,0\n"),
        "btc.csv line 3: close must be finite and > 0",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}2020-03-01T01:00:00Z,1,1,1,inf,0\n"),
        "btc.csv line 3: close must be finite and > 0",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}2020-03-01T01:00:00Z,1,x,1,2,0\n"),
        "btc.csv line 3: high is not a number",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}2020-03-01T01:00:00Z,1,1,1,2\n"),
        "btc.csv line 3: expected 6 fields, found 5",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}\n"),
        "btc.csv line 3: expected 6 fields, found 1",
    );
    check_error(
        &format!("{GEMINI_HEADER}{row1}{row1}"),
        "btc.csv line 3: duplicate timestamp 2020-03-01T00:00:00Z",
    );
    check_error(
        &format!("{GEMINI_HEADER}2020-03-01T01:00:00Z,1,1,1,2,0\n{row1}"),
        "btc.csv line 3: timestamp 2020-03-01T00:00:00Z is before the previous row's",
    );
    check_error(
        &format!("{GEMINI_HEADER}2020-03-01 00:00:00,1,1,1,2,0\n"),
        "btc.csv line 2: datetime_utc \"2020-03-01 00:00:00\" is not YYYY-MM-DDTHH:MM:SSZ",
    );
    check_error(
        &format!("{GEMINI_HEADER}2020-02-30T00:00:00Z,1,1,1,2,0\n"),
        "btc.csv line 2: datetime_utc \"2020-02-30T00:00:00Z\" is not YYYY-MM-DDTHH:MM:SSZ",
    );
    check_error(
        "date,close\n2022-1-01,3\n",
        "btc.csv line 2: date \"2022-1-01\" is not YYYY-MM-DD",
    );
    check_error(
        "datetime_utc,open_time_ms,close\n2020-03-01T00:00:00Z,1583020800001,3\n",
        "btc.csv line 2: open_time_ms 1583020800001 disagrees with datetime_utc 2020-03-01T00:00:00Z",
    );
    check_error(
        "datetime_utc,close\n2020-03-01T00:00:00Z,1\n2020-03-01T02:00:00Z,1\n2020-03-01T05:00:00Z,1\n",
        "btc.csv line 4: step of 10800 s from the previous row is not a multiple of the sampling interval of 7200 s",
    );
    assert_eq!(
        PriceSeries::new("x", vec![0, 60], vec![1.0, 0.0], None)
            .unwrap_err()
            .to_string(),
        "x: sample 1: close must be finite and > 0"
    );
    assert_eq!(
        PriceSeries::new("x", vec![0, 0], vec![1.0, 1.0], None)
            .unwrap_err()
            .to_string(),
        "x: sample 1: timestamp 0 is not after the previous 0"
    );
    let missing = load_csv(Path::new("/nonexistent/dir/none.csv")).unwrap_err();
    assert_eq!(missing.file, "none.csv");
    assert!(
        missing
            .to_string()
            .starts_with("none.csv: cannot be read: "),
        "{missing}"
    );
}

#[test]
fn timestamps() {
    assert_eq!(TimeFormat::Date.parse("1970-01-01"), Some(0));
    assert_eq!(TimeFormat::Date.parse("2000-03-01"), Some(951_868_800));
    assert_eq!(TimeFormat::Date.parse("2024-02-29"), Some(1_709_164_800));
    assert_eq!(TimeFormat::Date.parse("2023-02-29"), None);
    assert_eq!(
        TimeFormat::DateTime.parse("2020-03-13T02:00:00Z"),
        Some(1_584_064_800)
    );
    assert_eq!(TimeFormat::DateTime.parse("2020-03-13T24:00:00Z"), None);
    assert_eq!(
        TimeFormat::DateTime.parse("2020-03-13T02:00:00+00:00"),
        None
    );
    assert_eq!(TimeFormat::Date.parse("+020-03-13"), None);
}

/// Every file in the shared data directory loads, with the gaps its README lists.
#[test]
fn every_shared_file_loads_with_documented_gaps() {
    let dir = shared_data("");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".csv") {
            continue;
        }
        let series = load_csv(&path).unwrap_or_else(|e| panic!("{e}"));
        let expected_missing = if name.ends_with("_daily.csv") && name.starts_with("binance_") {
            Some(6)
        } else if name.starts_with("binance_btcusdt_1h") || name.starts_with("binance_ethusdt_1h") {
            Some(127)
        } else if name.starts_with("binance_solusdt_1h") {
            Some(19)
        } else {
            None
        };
        println!(
            "{name}: {} rows, interval {} s, {} missing",
            series.len(),
            series.interval_s(),
            series.n_missing()
        );
        if let Some(expected) = expected_missing {
            assert_eq!(series.n_missing(), expected, "{name}");
        }
        n_files += 1;
    }
    assert_eq!(n_files, 20);
}
