//! Integration tests of `ballast option price`: the real binary, its JSON contract, its table, and its errors.
//!
//! Every assertion prints the command line, exit code, stdout and stderr when it fails.

use std::fmt;
use std::process::Command;

// ----- harness ---------------------------------------------------------------------------------------------------

/// What one run of the binary did.
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

/// Runs `ballast option price args...`.
fn option_price(args: &[&str]) -> Outcome {
    let mut all = vec!["option", "price"];
    all.extend_from_slice(args);
    let output = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(&all)
        .output()
        .expect("spawn ballast");
    Outcome {
        command: format!("ballast {}", all.join(" ")),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Outcome {
    /// Exit 0, nothing on stderr, and stdout one JSON object on one line.
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        assert_eq!(self.code, Some(0), "unexpected exit code{self}");
        assert!(self.stderr.is_empty(), "unexpected stderr{self}");
        assert_eq!(self.stdout.lines().count(), 1, "not one line{self}");
        match serde_json::from_str(&self.stdout) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("stdout is not a JSON object ({other:?}){self}"),
        }
    }

    fn number(&self, key: &str) -> f64 {
        self.json()[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number{self}"))
    }

    /// A refusal: the exit code, nothing on stdout, one `error: ` line on stderr containing every needle.
    fn refused(&self, code: i32, needles: &[&str]) {
        assert_eq!(self.code, Some(code), "unexpected exit code{self}");
        assert!(self.stdout.is_empty(), "unexpected stdout{self}");
        assert!(
            self.stderr.starts_with("error: "),
            "stderr is not an error line{self}"
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}{self}"
            );
        }
    }
}

fn assert_close(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (tolerance {tolerance:e})"
    );
}

/// Hull's stock option: S = 42, K = 40, r = 10 %, σ = 20 %, T = 0.5.
const HULL: [&str; 10] = [
    "--model",
    "black-scholes",
    "--spot",
    "42",
    "--strike",
    "40",
    "--rate",
    "0.1",
    "--expiry-years",
    "0.5",
];

fn hull(kind: &str, rest: &[&str]) -> Outcome {
    let mut args = HULL.to_vec();
    args.extend_from_slice(&["--kind", kind]);
    args.extend_from_slice(rest);
    option_price(&args)
}

// ----- the contract ----------------------------------------------------------------------------------------------

#[test]
fn hull_call_prints_price_and_greeks_in_the_contract_order() {
    let outcome = hull("call", &["--vol", "0.2", "--json"]);
    let json = outcome.json();
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    let mut sorted = vec!["price", "delta", "gamma", "vega", "theta", "rho"];
    assert!(
        outcome.stdout.starts_with("{\"price\":")
            && outcome.stdout.find("\"delta\"") < outcome.stdout.find("\"gamma\"")
            && outcome.stdout.find("\"gamma\"") < outcome.stdout.find("\"vega\"")
            && outcome.stdout.find("\"vega\"") < outcome.stdout.find("\"theta\"")
            && outcome.stdout.find("\"theta\"") < outcome.stdout.find("\"rho\""),
        "keys out of order{outcome}"
    );
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "exactly these keys{outcome}");
    let price = outcome.number("price");
    assert_eq!(format!("{price:.2}"), "4.76", "{outcome}");
    assert_close("price", price, 4.759_422_392_871_535, 1e-12);
    // N(d1) with Hull's d1 = 0.7693.
    assert_eq!(
        format!("{:.4}", outcome.number("delta")),
        "0.7791",
        "{outcome}"
    );
    assert_close("gamma", outcome.number("gamma"), 0.049_962_670_405_9, 1e-10);
    // Per 1.00 of volatility and of rate; theta per year, negative for a long call.
    assert_close("vega", outcome.number("vega"), 8.813_415_059_6, 1e-8);
    assert_close("theta", outcome.number("theta"), -4.559_092_194_6, 1e-8);
    assert_close("rho", outcome.number("rho"), 13.982_045_913_4, 1e-8);
}

#[test]
fn hull_put_is_0_81() {
    let outcome = hull("put", &["--vol", "0.2", "--json"]);
    let price = outcome.number("price");
    assert_eq!(format!("{price:.2}"), "0.81", "{outcome}");
    assert_close("price", price, 0.808_599_372_900_096, 1e-12);
    assert!(
        outcome.number("delta") < 0.0 && outcome.number("rho") < 0.0,
        "{outcome}"
    );
}

/// Hull's index option with a dividend yield (51.83), and the yield defaults to 0.
#[test]
fn dividend_yield_is_a_continuous_yield_and_defaults_to_zero() {
    let index = option_price(&[
        "--model",
        "black-scholes",
        "--kind",
        "call",
        "--spot",
        "930",
        "--strike",
        "900",
        "--rate",
        "0.08",
        "--dividend-yield",
        "0.03",
        "--vol",
        "0.2",
        "--expiry-years",
        "0.16666666666666666",
        "--json",
    ]);
    assert_eq!(format!("{:.2}", index.number("price")), "51.83", "{index}");
    let omitted = hull("call", &["--vol", "0.2", "--json"]);
    let zero = hull("call", &["--vol", "0.2", "--dividend-yield", "0", "--json"]);
    assert_eq!(omitted.stdout, zero.stdout, "{omitted}{zero}");
}

/// Hull's futures option under Black-76 (1.12); `--spot` is the forward.
#[test]
fn black_76_futures_put() {
    let outcome = option_price(&[
        "--model",
        "black-76",
        "--kind",
        "put",
        "--spot",
        "20",
        "--strike",
        "20",
        "--rate",
        "0.09",
        "--vol",
        "0.25",
        "--expiry-years",
        "0.3333333333333333",
        "--json",
    ]);
    assert_eq!(
        format!("{:.2}", outcome.number("price")),
        "1.12",
        "{outcome}"
    );
    // Black-76 rho holds the forward: only the discounting moves, rho = −T·price.
    assert_close(
        "rho",
        outcome.number("rho"),
        -outcome.number("price") / 3.0,
        1e-12,
    );
}

#[test]
fn table_without_json() {
    let outcome = hull("call", &["--vol", "0.2"]);
    assert_eq!(outcome.code, Some(0), "{outcome}");
    for needle in [
        "model                black-scholes",
        "price                4.759422393",
        "delta                0.7791312909",
        "vega (per 1.00 vol)  8.813415060",
        "theta (per year)     -4.559092195",
        "rho (per 1.00 rate)  13.98204591",
    ] {
        assert!(
            outcome.stdout.contains(needle),
            "stdout lacks {needle:?}{outcome}"
        );
    }
}

#[test]
fn negative_rates_are_accepted() {
    let outcome = option_price(&[
        "--model",
        "black-scholes",
        "--kind",
        "put",
        "--spot",
        "100",
        "--strike",
        "100",
        "--rate",
        "-0.01",
        "--dividend-yield",
        "-0.005",
        "--vol",
        "0.3",
        "--expiry-years",
        "1",
        "--json",
    ]);
    assert!(outcome.number("price") > 0.0, "{outcome}");
}

// ----- implied volatility ----------------------------------------------------------------------------------------

#[test]
fn implied_vol_of_hull_call() {
    let outcome = hull("call", &["--price", "4.759422392871535", "--json"]);
    let json = outcome.json();
    assert_eq!(
        json.keys().collect::<Vec<_>>(),
        ["implied_vol"],
        "{outcome}"
    );
    assert_close("implied vol", outcome.number("implied_vol"), 0.2, 1e-12);
    let table = hull("call", &["--price", "4.759422392871535"]);
    assert!(
        table.stdout.contains("implied vol     0.2000000000"),
        "{table}"
    );
}

/// A 0.01-delta call one week out and a one-hour put, priced and solved back through the binary.
#[test]
fn implied_vol_deep_out_of_the_money_and_one_hour() {
    let cases: [[&str; 12]; 2] = [
        // Black-76, F = 60,000, one week, 60 % vol: the 0.01-delta strike is 73,047 (delta 0.0100)
        [
            "--model",
            "black-76",
            "--kind",
            "call",
            "--spot",
            "60000",
            "--strike",
            "73047",
            "--rate",
            "0",
            "--expiry-years",
            "0.019178082191780823",
        ],
        // Black-Scholes, one hour, 0.5 % out of the money.
        [
            "--model",
            "black-scholes",
            "--kind",
            "put",
            "--spot",
            "100",
            "--strike",
            "99.5",
            "--rate",
            "0.05",
            "--expiry-years",
            "0.00011415525114155251",
        ],
    ];
    for (case, vol) in cases.iter().zip(["0.6", "0.4"]) {
        let mut args = case.to_vec();
        args.extend_from_slice(&["--vol", vol, "--json"]);
        let priced = option_price(&args);
        let price = priced.number("price").to_string();
        let mut args = case.to_vec();
        args.extend_from_slice(&["--price", &price, "--json"]);
        let solved = option_price(&args);
        assert_close(
            &format!("implied vol{solved}"),
            solved.number("implied_vol"),
            vol.parse().unwrap(),
            1e-10,
        );
    }
}

#[test]
fn implied_vol_refuses_prices_no_volatility_fits() {
    hull("call", &["--price", "3", "--json"]).refused(
        2,
        &[
            "error: option price: price 3 is not above the lower bound 3.95",
            "max(S·e^(-qT) - K·e^(-rT), 0)",
            "no positive volatility fits",
        ],
    );
    hull("call", &["--price", "42", "--json"]).refused(
        2,
        &[
            "price 42 is not below the upper bound 42",
            "S·e^(-qT)",
            "no volatility fits",
        ],
    );
    hull("put", &["--price", "40"]).refused(2, &["not below the upper bound", "K·e^(-rT)"]);
    hull("call", &["--price", "-1"]).refused(2, &["--price must be a finite number >= 0, got -1"]);
    // Within a few rounding units of the upper bound, where vega vanishes.
    hull("call", &["--price", "41.99999999999999"])
        .refused(2, &["vega is zero to within rounding"]);
}

// ----- bad input -------------------------------------------------------------------------------------------------

#[test]
fn invalid_inputs_name_the_flag_and_the_rule() {
    let base = |replace: &str, value: &str| {
        let mut args: Vec<&str> = HULL.to_vec();
        let at = args.iter().position(|a| *a == replace);
        match at {
            Some(i) => args[i + 1] = value,
            None => args.extend_from_slice(&[replace, value]),
        }
        args.extend_from_slice(&["--kind", "call", "--vol", "0.2", "--json"]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run =
        |args: Vec<String>| option_price(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(base("--spot", "-42")).refused(
        2,
        &["error: option price: --spot must be a finite number > 0, got -42"],
    );
    run(base("--strike", "0")).refused(2, &["--strike must be a finite number > 0, got 0"]);
    run(base("--expiry-years", "0"))
        .refused(2, &["--expiry-years must be a finite number > 0, got 0"]);
    run(base("--expiry-years", "-1"))
        .refused(2, &["--expiry-years must be a finite number > 0, got -1"]);
    run(base("--rate", "inf")).refused(2, &["--rate must be a finite number, got inf"]);
    run(base("--dividend-yield", "NaN"))
        .refused(2, &["--dividend-yield must be a finite number, got NaN"]);
    hull("call", &["--vol", "-0.2"]).refused(2, &["--vol must be a finite number > 0, got -0.2"]);
    hull("call", &["--vol", "0"]).refused(2, &["--vol must be a finite number > 0, got 0"]);
    option_price(&[
        "--model",
        "black-76",
        "--kind",
        "call",
        "--spot",
        "100",
        "--strike",
        "100",
        "--rate",
        "0.05",
        "--dividend-yield",
        "0.02",
        "--vol",
        "0.5",
        "--expiry-years",
        "1",
    ])
    .refused(
        2,
        &["--dividend-yield must be 0 for black-76 (the forward already carries"],
    );
    option_price(&[
        "--model",
        "black-76",
        "--kind",
        "call",
        "--spot",
        "0",
        "--strike",
        "100",
        "--rate",
        "0.05",
        "--vol",
        "0.5",
        "--expiry-years",
        "1",
    ])
    .refused(
        2,
        &["--spot (the forward, for black-76) must be a finite number > 0, got 0"],
    );
}

/// What clap refuses: both or neither of --vol and --price, an unknown model, a value that is not a number.
#[test]
fn malformed_command_lines_are_refused() {
    hull("call", &["--vol", "0.2", "--price", "4"]).refused(2, &["cannot be used with"]);
    hull("call", &["--json"]).refused(2, &["--vol <SIGMA>|--price <P>"]);
    hull("call", &["--vol", "abc"]).refused(2, &["invalid value 'abc' for '--vol <SIGMA>'"]);
    hull("straddle", &["--vol", "0.2"]).refused(2, &["invalid value 'straddle'"]);
    option_price(&["--model", "heston"]).refused(2, &["invalid value 'heston'"]);
}
