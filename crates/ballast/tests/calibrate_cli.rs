//! Integration tests of `ballast calibrate`: the real binary on the shipped example (real BTC, ETH, SOL and FTT
//! history from ../shared/data), a synthetic series whose ES is known by hand, the patch round trip through the
//! engine's validation, and bad calibration files.
//!
//! Every assertion prints the command line, exit code, stdout and stderr when it fails. A failed test keeps its
//! directory (under the system temp dir, `ballast-calibrate-<pid>-<test>`) for inspection.

use ballast_engine::ProtocolConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

// ----- harness ---------------------------------------------------------------------------------------------------

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    repository()
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn shared_data(name: &str) -> String {
    repository()
        .join("../shared/data")
        .join(name)
        .display()
        .to_string()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ballast-calibrate-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read test file")
    }

    fn ballast(&self, args: &[&str]) -> Outcome {
        let output = Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("spawn ballast");
        Outcome {
            command: format!("ballast {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct Outcome {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Outcome {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "unexpected exit code{self}");
        assert!(self.stderr.is_empty(), "unexpected stderr{self}");
        self
    }

    fn json(&self) -> serde_json::Value {
        self.ok();
        assert_eq!(self.stdout.lines().count(), 1, "not one line{self}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON: {e}{self}"))
    }

    /// Exit 2, nothing on stdout, one `error: ` line on stderr containing every needle.
    fn refused(&self, needles: &[&str]) {
        assert_eq!(self.code, Some(2), "unexpected exit code{self}");
        assert!(self.stdout.is_empty(), "unexpected stdout{self}");
        assert!(
            self.stderr.starts_with("error: "),
            "not an error line{self}"
        );
        assert_eq!(self.stderr.lines().count(), 1, "not one line{self}");
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}{self}"
            );
        }
    }
}

/// The row of `report` (the `--json` object) for `item` and `field`.
fn row<'a>(report: &'a serde_json::Value, item: &str, field: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["item"] == item && r["field"] == field)
        .unwrap_or_else(|| panic!("no row {item} {field}"))
}

fn recommended(report: &serde_json::Value, item: &str, field: &str) -> f64 {
    row(report, item, field)["recommended"]
        .as_str()
        .expect("recommended is a string")
        .parse()
        .expect("a decimal")
}

// ----- the shipped example on real data ---------------------------------------------------------------------------

#[test]
fn example_patch_applies_and_passes_engine_validation() {
    let dir = TempDir::new("example");
    let out = dir.path("patch.toml");
    let merged = dir.path("merged.toml");
    let run = dir.ballast(&[
        "calibrate",
        &example("calibration.toml"),
        "--json",
        "--out",
        &out,
        "--apply",
        &merged,
    ]);
    let report = run.json();
    let patch = dir.read("patch.toml");
    assert_eq!(report["patch"].as_str(), Some(patch.as_str()), "{run}");
    // The four assets, their markets and the three perp tiers are in the patch.
    for needle in [
        "symbol = \"BTC\"",
        "symbol = \"ETH\"",
        "symbol = \"SOL\"",
        "symbol = \"MNGO\"",
        "name = \"large-cap\"",
        "name = \"long-tail\"",
        "symbol = \"MNGO-PERP\"",
    ] {
        assert!(patch.contains(needle), "patch lacks {needle}:\n{patch}");
    }
    // The merged file is valid and holds every recommended value.
    let merged_text = dir.read("merged.toml");
    let config = ProtocolConfig::from_toml("merged.toml", &merged_text)
        .unwrap_or_else(|e| panic!("merged file refused: {e}"));
    for r in report["rows"].as_array().unwrap() {
        if r["patch"] != "yes" {
            continue;
        }
        let (item, field) = (r["item"].as_str().unwrap(), r["field"].as_str().unwrap());
        let value = match r["section"].as_str().unwrap() {
            "asset" => serde_json::to_value(config.assets.iter().find(|a| a.symbol == item)),
            "market" => serde_json::to_value(config.markets.iter().find(|m| m.symbol == item)),
            _ => serde_json::to_value(config.perp_tiers.iter().find(|t| t.name == item)),
        }
        .unwrap();
        let held: f64 = value[field].as_str().unwrap().parse().unwrap();
        assert_eq!(held, recommended(&report, item, field), "{item} {field}");
    }
    // `ballast check` accepts the merged file, and untouched parts (comments, USDC) are as they were.
    dir.ballast(&["check", &merged]).ok();
    assert!(merged_text.contains("# A thin, volatile token"));
    let usdc = config.assets.iter().find(|a| a.symbol == "USDC").unwrap();
    assert_eq!(usdc.maintenance_asset_weight.to_string(), "1");

    // Sanity of the real numbers: BTC's 24-hour 99 % ES is some 10-25 %, ETH is riskier than BTC, every weight is
    // within the tier's bounds, and initial is at least as strict as maintenance.
    let btc = &report["assets"][0];
    assert_eq!(btc["symbol"], "BTC");
    let es_down = btc["es_down"].as_f64().unwrap();
    assert!(es_down > 0.10 && es_down < 0.25, "{es_down}");
    assert!(btc["n_observations"].as_u64().unwrap() > 40_000);
    assert!(
        recommended(&report, "ETH", "maintenance_asset_weight")
            < recommended(&report, "BTC", "maintenance_asset_weight")
    );
    for asset in ["BTC", "ETH", "SOL", "MNGO"] {
        assert!(
            recommended(&report, asset, "initial_asset_weight")
                <= recommended(&report, asset, "maintenance_asset_weight")
        );
        assert!(
            recommended(&report, asset, "initial_liability_weight")
                >= recommended(&report, asset, "maintenance_liability_weight")
        );
    }
    // The large-cap tier takes the more demanding of BTC-PERP and ETH-PERP.
    assert_eq!(
        recommended(&report, "large-cap", "maintenance_margin_ratio"),
        recommended(&report, "BTC-PERP", "maintenance_margin_ratio").max(recommended(
            &report,
            "ETH-PERP",
            "maintenance_margin_ratio"
        ))
    );
    assert_eq!(
        recommended(&report, "large-cap", "open_interest_upper_cap"),
        recommended(&report, "BTC-PERP", "open_interest_upper_cap").min(recommended(
            &report,
            "ETH-PERP",
            "open_interest_upper_cap"
        ))
    );
}

#[test]
fn the_table_explains_every_number_and_prints_the_patch() {
    let dir = TempDir::new("table");
    let run = dir.ballast(&[
        "calibrate",
        &example("calibration.toml"),
        "--horizon-hours",
        "4",
    ]);
    run.ok();
    for needle in [
        "horizon 4 h, ES level 0.99 (initial 0.995)",
        "binance_btcusdt_1h_2017-08-17_2022-10-11.csv",
        "maintenance_asset_weight",
        "1 - (ES_down + slippage + fee) = ",
        "2c/(1 - ES_down - fee + slippage)",
        "largest of BTC-PERP",
        "depth_usd*(budget/k)^2",
        "2017-08-17T04:00:00Z..2022-10-11T10:00:00Z",
        "# Risk-parameter patch of",
        "[[perp_tier]]",
    ] {
        assert!(run.stdout.contains(needle), "stdout lacks {needle:?}{run}");
    }
}

// ----- a series whose ES is known by hand -------------------------------------------------------------------------

/// 2001 daily closes, flat except 20 falls of exactly 25 % (every 100th day): prices `3^c · 4^(20 − c) / 2^30` after
/// `c` falls, all exact in binary, so every return is exactly 0 or -0.25. With 2000 one-day returns at 0.99
/// (type 7, h = 1979.01) the down-tail is exactly the 20 falls and at 0.995 (h = 1989.005) too: ES_down = 0.25 at
/// both levels. Nothing rises: ES_up = 0. |r|: ES_abs = 0.25.
fn synthetic_csv() -> String {
    let mut text = String::from("date,close\n");
    let mut falls = 0;
    for day in 0..=2000u32 {
        if day > 0 && day % 100 == 50 {
            falls += 1;
        }
        let price = 3f64.powi(falls) * 4f64.powi(20 - falls) / 2f64.powi(30);
        let date = 946_684_800i64 + i64::from(day) * 86_400; // 2000-01-01 + day
        let (y, m, d) = civil(date / 86_400);
        text.push_str(&format!("{y:04}-{m:02}-{d:02},{price}\n"));
    }
    assert_eq!(falls, 20);
    text
}

/// Gregorian date of a day number from 1970-01-01 (test helper, by counting).
fn civil(mut days: i64) -> (i64, i64, i64) {
    let mut year = 1970;
    loop {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let length = if leap { 366 } else { 365 };
        if days < length {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (month, length) in (1..).zip(months) {
                if days < length {
                    return (year, month, days + 1);
                }
                days -= length;
            }
        }
        days -= length;
        year += 1;
    }
}

/// A calibration of BTC (fee 0.04, tier major: max 0.95, min 1.05) and BTC-PERP (fee 0.01, max leverage 20) on the
/// synthetic series, depth 4e8 USD, reference 1e6 USD: slippage sqrt(1e6 / 4e8) = 0.05.
fn synthetic_calibration(dir: &TempDir, extra: &str) -> String {
    dir.write("synthetic.csv", synthetic_csv());
    dir.write(
        "calibration.toml",
        format!(
            "protocol = {:?}\nhorizon_hours = 24\nlevel = 0.99\n{extra}\n\
             [[asset]]\nsymbol = \"BTC\"\ndata = \"synthetic.csv\"\ndepth_usd = 4e8\nreference_size_usd = 1e6\n\
             markets = [\"BTC-PERP\"]\n",
            example("protocol.toml")
        ),
    )
}

#[test]
fn synthetic_series_gives_the_formulas_exactly() {
    let dir = TempDir::new("synthetic");
    let calibration = synthetic_calibration(&dir, "");
    let report = dir.ballast(&["calibrate", &calibration, "--json"]).json();
    let btc = &report["assets"][0];
    assert_eq!(btc["n_observations"], 2000);
    assert_eq!(btc["es_down"], 0.25);
    assert_eq!(btc["es_down_initial"], 0.25);
    assert_eq!(btc["es_up"], 0.0);
    assert_eq!(btc["es_abs"], 0.25);
    assert_eq!(btc["window_start"], "2000-01-01");
    let slippage = btc["slippage_reference"].as_f64().unwrap();
    assert!((slippage - 0.05).abs() < 1e-15);
    let check = |item: &str, field: &str, expected: &str| {
        assert_eq!(
            row(&report, item, field)["recommended"],
            expected,
            "{item} {field}"
        );
    };
    // 1 − (0.25 + 0.05 + 0.04) = 0.66; 1 + 0 + 0.05 + 0.04 = 1.09.
    check("BTC", "maintenance_asset_weight", "0.66");
    check("BTC", "initial_asset_weight", "0.66");
    check("BTC", "maintenance_liability_weight", "1.09");
    check("BTC", "initial_liability_weight", "1.09");
    // 0.25 + 0.05 + 0.01 = 0.31 for both ratios; OI cap 4e8 · 0.05² = 1e6, lower 5e5.
    check("BTC-PERP", "maintenance_margin_ratio", "0.31");
    check("BTC-PERP", "initial_margin_ratio", "0.31");
    check("BTC-PERP", "open_interest_upper_cap", "1000000");
    check("BTC-PERP", "open_interest_lower_cap", "500000");
    // Premia: P = 3^20 / 2^30, c = sqrt(P / 4e8); spot f = 2c / (1 − 0.25 − 0.04 + 0.05), perp f = c, both up to two
    // significant digits.
    let price = 3f64.powi(20) / 2f64.powi(30);
    assert_eq!(btc["last_close_usd"], price);
    let c = (price / 4e8).sqrt();
    let up2 = |x: f64| {
        let e = x.log10().floor() as i32 - 1;
        (x / 10f64.powi(e)).ceil() * 10f64.powi(e)
    };
    let spot_f = recommended(&report, "BTC", "size_premium_factor");
    assert!((spot_f - up2(2.0 * c / 0.76)).abs() < 1e-12, "{spot_f}");
    let perp_f = recommended(&report, "BTC-PERP", "size_premium_factor");
    assert!((perp_f - up2(c)).abs() < 1e-12, "{perp_f}");
    // ETH-PERP shares large-cap and was not calibrated: the tier takes BTC-PERP's stricter values (ratios up, caps
    // down), never looser ones.
    check("large-cap", "maintenance_margin_ratio", "0.31");
    check("large-cap", "open_interest_upper_cap", "1000000");
    // The patch holds exactly the changed fields.
    let patch = report["patch"].as_str().unwrap();
    assert!(patch.contains("[[asset]]\nsymbol = \"BTC\"\nmaintenance_asset_weight = \"0.66\"\ninitial_asset_weight = \"0.66\"\nmaintenance_liability_weight = \"1.09\"\ninitial_liability_weight = \"1.09\"\n"), "{patch}");
    assert!(!patch.contains("symbol = \"ETH\""), "{patch}");
}

#[test]
fn a_higher_level_gives_stricter_numbers() {
    let dir = TempDir::new("levels");
    let calibration = dir.write(
        "calibration.toml",
        format!(
            "protocol = {:?}\nhorizon_hours = 24\nlevel = 0.99\n\
             [[asset]]\nsymbol = \"BTC\"\ndata = {:?}\ndepth_usd = 4e11\nreference_size_usd = 1e7\n\
             markets = [\"BTC-PERP\"]\n",
            example("protocol.toml"),
            shared_data("binance_btcusdt_daily.csv")
        ),
    );
    let at = |level: &str| {
        dir.ballast(&["calibrate", &calibration, "--json", "--level", level])
            .json()
    };
    let (low, high) = (at("0.95"), at("0.99"));
    assert_eq!(high["initial_level"], 0.995);
    for (item, field) in [
        ("BTC", "maintenance_asset_weight"),
        ("BTC", "initial_asset_weight"),
    ] {
        assert!(
            recommended(&high, item, field) < recommended(&low, item, field),
            "{item} {field}"
        );
    }
    for (item, field) in [
        ("BTC", "maintenance_liability_weight"),
        ("BTC-PERP", "maintenance_margin_ratio"),
        ("BTC-PERP", "initial_margin_ratio"),
    ] {
        assert!(
            recommended(&high, item, field) > recommended(&low, item, field),
            "{item} {field}"
        );
    }
}

// ----- bad input --------------------------------------------------------------------------------------------------

/// A valid calibration of BTC on the synthetic series with `from` replaced by `to` in its text.
fn calibration_with(dir: &TempDir, from: &str, to: &str) -> String {
    let path = synthetic_calibration(dir, "");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    dir.write("calibration.toml", text.replace(from, to))
}

#[test]
fn bad_calibration_files_name_the_file_and_field() {
    let dir = TempDir::new("bad");
    let cases: &[(&str, &str, &[&str])] = &[
        ("depth_usd = 4e8\n", "", &["calibration.toml", "missing field `depth_usd`"]),
        ("symbol = \"BTC\"", "symbol = \"XYZ\"", &["calibration.toml: asset XYZ: symbol is not an asset of protocol file"]),
        ("depth_usd = 4e8", "depth_usd = 0", &["calibration.toml: asset BTC: depth_usd 0 must be a finite number > 0"]),
        ("depth_usd = 4e8", "depth_usd = -5e8", &["asset BTC: depth_usd -500000000 must be a finite number > 0"]),
        ("reference_size_usd = 1e6", "reference_size_usd = nan", &["asset BTC: reference_size_usd NaN must be a finite number > 0"]),
        ("level = 0.99", "level = 1.5", &["calibration.toml: level 1.5 must be strictly between 0 and 1"]),
        ("level = 0.99", "level = 0.99\ninitial_level = 0.9", &["calibration.toml: initial_level 0.9 must be at least level and below 1"]),
        ("data = \"synthetic.csv\"", "data = \"missing.csv\"", &["calibration.toml: asset BTC: data missing.csv: missing.csv: cannot be read"]),
        ("horizon_hours = 24", "horizon_hours = 36", &["calibration.toml: asset BTC: data synthetic.csv: horizon_hours 36 is not a whole number of the data's sampling interval of 86400 s"]),
        ("horizon_hours = 24", "horizon_hours = 0", &["calibration.toml: horizon_hours 0 must be between 1 and 8760 hours"]),
        ("markets = [\"BTC-PERP\"]", "markets = [\"ETH-PERP\"]", &["asset BTC: markets: ETH-PERP trades ETH, not BTC"]),
        ("markets = [\"BTC-PERP\"]", "markets = [\"DOGE-PERP\"]", &["asset BTC: markets: DOGE-PERP is not a market of protocol file"]),
        ("depth_usd = 4e8", "depth = 4e8", &["calibration.toml", "unknown field `depth`"]),
        ("depth_usd = 4e8", "depth_usd = 4e8\nfrom = \"2000-02-30\"", &["asset BTC: from \"2000-02-30\" is not a date YYYY-MM-DD"]),
        ("depth_usd = 4e8", "depth_usd = 4e8\nfrom = \"2003-01-01\"\nto = \"2002-01-01\"", &["asset BTC: to 2002-01-01 is before from 2003-01-01"]),
        ("depth_usd = 4e8", "depth_usd = 4e8\nfrom = \"2005-06-23\"", &["asset BTC: data synthetic.csv from 2005-06-23 to the end: the window holds 1 samples"]),
        ("depth_usd = 4e8", "depth_usd = 4e8\nfrom = \"2004-01-01\"", &["asset BTC:", "horizon returns: at least 2000 are needed"]),
        ("level = 0.99", "level = 0.99\noi_slippage_budget = 1", &["calibration.toml: oi_slippage_budget 1 must be strictly between 0 and 1"]),
        ("level = 0.99", "level = 0.99\nimpact_coefficient = 0", &["calibration.toml: impact_coefficient 0 must be a finite number > 0"]),
    ];
    for (from, to, needles) in cases {
        let calibration = calibration_with(&dir, from, to);
        dir.ballast(&["calibrate", &calibration]).refused(needles);
    }
    // A duplicated asset.
    let path = synthetic_calibration(&dir, "");
    let text = std::fs::read_to_string(&path).unwrap();
    let twice =
        text.replace("markets = [\"BTC-PERP\"]\n", "") + &text[text.find("[[asset]]").unwrap()..];
    let calibration = dir.write(
        "calibration.toml",
        twice.replace("markets = [\"BTC-PERP\"]\n", ""),
    );
    dir.ballast(&["calibrate", &calibration])
        .refused(&["asset BTC: listed twice"]);
    // Flags are named as flags.
    let calibration = synthetic_calibration(&dir, "");
    dir.ballast(&["calibrate", &calibration, "--level", "0"])
        .refused(&["error: --level 0 must be strictly between 0 and 1"]);
    dir.ballast(&["calibrate", &calibration, "--horizon-hours", "12"])
        .refused(&["asset BTC: data synthetic.csv: --horizon-hours 12 is not a whole number of the data's sampling interval of 86400 s"]);
    dir.ballast(&["calibrate", &calibration, "--horizon-hours", "9000"])
        .refused(&["error: --horizon-hours 9000 must be between 1 and 8760 hours"]);
    // A missing calibration file, and a protocol file that is not there.
    dir.ballast(&["calibrate", &dir.path("nothing.toml")])
        .refused(&["cannot read calibration file", "nothing.toml"]);
    let calibration = calibration_with(&dir, &example("protocol.toml"), "nowhere.toml");
    dir.ballast(&["calibrate", &calibration])
        .refused(&["cannot read protocol file", "nowhere.toml"]);
}
