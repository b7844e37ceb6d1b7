//! Integration tests: the real `ballast` binary, run in a temporary directory, against the shipped examples.
//!
//! Every assertion prints the command line, exit code, stdout and stderr when it fails. A failed test keeps its
//! directory (under the system temp dir, `ballast-cli-<pid>-<test>`) for inspection; a passing one removes it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

// ----- harness ---------------------------------------------------------------------------------------------------

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example_config() -> String {
    examples().join("protocol.toml").display().to_string()
}

fn example_commands() -> String {
    examples().join("commands.jsonl").display().to_string()
}

/// A fresh directory for one test; removed on drop unless the test is failing.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ballast-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write test file");
        path.display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read test file")
    }

    /// Runs `ballast args...` with this directory as the working directory.
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

impl Outcome {
    fn expect_code(&self, code: i32) -> &Outcome {
        assert_eq!(self.code, Some(code), "unexpected exit code{self}");
        self
    }

    fn stdout_has(&self, needle: &str) -> &Outcome {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{self}"
        );
        self
    }

    fn stderr_has(&self, needle: &str) -> &Outcome {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{self}"
        );
        self
    }

    /// Every stdout line, parsed as JSON (each must be an object with a `type`).
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}{self}"));
                assert!(
                    value["type"].is_string(),
                    "line without a type: {line}{self}"
                );
                value
            })
            .collect()
    }

    /// The lines whose `type` is `kind`.
    fn of_type(&self, kind: &str) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    fn last_line(&self) -> serde_json::Value {
        self.json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no output{self}"))
    }
}

fn is_sha256_hex(value: &serde_json::Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ----- check -----------------------------------------------------------------------------------------------------

#[test]
fn check_accepts_the_example_and_describes_it() {
    let dir = TempDir::new("check_ok");
    let out = dir.ballast(&["check", &example_config()]);
    out.expect_code(0)
        .stdout_has(": ok (3 tiers, 5 assets, 3 perp tiers, 6 markets)")
        .stdout_has("ballast-example")
        .stdout_has("quote asset                          USDC")
        .stdout_has("liquidation_insurance_share          0.25")
        .stdout_has("insurance cap (USD)")
        .stdout_has("liquidation fee")
        .stdout_has("isolated_only")
        .stdout_has("rate at 100%");
    assert!(out.stderr.is_empty(), "{out}");
    // The interest table: USDC's curve is 0 at 0%, 0.04 at its kink 0.8, 0.79 at 100%.
    let usdc = out
        .stdout
        .lines()
        .rfind(|l| l.trim_start().starts_with("USDC "))
        .unwrap_or_else(|| panic!("no USDC interest row{out}"));
    let cells: Vec<&str> = usdc.split_whitespace().collect();
    assert_eq!(&cells[..5], ["USDC", "0", "0.8", "0.04", "0.79"], "{out}");
}

/// The cells of the first stdout row whose first cell is `first`, split on whitespace.
fn row<'a>(out: &'a Outcome, first: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row starting with {first}{out}"))
}

#[test]
fn check_lists_perp_tiers_and_markets() {
    let dir = TempDir::new("check_markets");
    let out = dir.ballast(&["check", &example_config()]);
    out.expect_code(0)
        .stdout_has("\nperp tiers (")
        .stdout_has("\nmarkets (");
    // Tier: initial and maintenance margin ratios, open interest caps (USD), insurance cap per bankruptcy (USD),
    // the markets in it.
    assert_eq!(
        row(&out, "large-cap"),
        [
            "large-cap",
            "0.05",
            "0.03",
            "500000000",
            "1000000000",
            "2000000",
            "BTC-PERP",
            "ETH-PERP",
            "BTC-29DEC23-60000-C",
            "BTC-29DEC23-50000-P"
        ],
        "{out}"
    );
    assert_eq!(row(&out, "mid-cap")[5..], ["500000", "SOL-PERP"], "{out}");
    // Market: underlying, tier, step size, size premium, taker/maker/liquidation fees, max leverage, positive-PnL
    // initial weight, funding interval (s) and clamp per interval.
    assert_eq!(
        row(&out, "BTC-PERP"),
        [
            "BTC-PERP",
            "BTC",
            "large-cap",
            "0.0001",
            "0.0002",
            "0.0005",
            "0.0002",
            "0.01",
            "20",
            "0.9",
            "3600",
            "0.0005"
        ],
        "{out}"
    );
    for market in ["ETH-PERP", "SOL-PERP", "MNGO-PERP"] {
        assert_eq!(row(&out, market).len(), 12, "{out}");
    }
}

/// The cells of the first stdout row whose first cell is `first`, after the line that starts with `heading`.
fn row_under<'a>(out: &'a Outcome, heading: &str, first: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with(heading))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row starting with {first} under {heading:?}{out}"))
}

#[test]
fn check_shows_the_waterfall_in_order_and_how_the_pool_quotes_each_market() {
    let dir = TempDir::new("check_waterfall_pool");
    let out = dir.ballast(&["check", &example_config()]);
    out.expect_code(0).stdout_has(
        "\nbankruptcy_waterfall                 venue_claims -> insurance -> socialize\n",
    );
    // Impact depth (USD), max impact, max exposure; a market without `[market.pool]` shows dashes.
    let heading = "counterparty pool quoting (";
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with(heading))
            .count(),
        1,
        "{out}"
    );
    assert_eq!(
        row_under(&out, heading, "market"),
        ["market", "impact", "depth", "(USD)", "max", "impact", "max", "exposure"],
        "{out}"
    );
    assert_eq!(
        row_under(&out, heading, "BTC-PERP"),
        ["BTC-PERP", "500000000", "0.05", "0.5"],
        "{out}"
    );
    assert_eq!(
        row_under(&out, heading, "SOL-PERP"),
        ["SOL-PERP", "50000000", "0.05", "0.3"],
        "{out}"
    );
    assert_eq!(
        row_under(&out, heading, "MNGO-PERP"),
        ["MNGO-PERP", "-", "-", "-"],
        "{out}"
    );

    // The steps print in the configured order, as the protocol file spells them.
    let config = std::fs::read_to_string(example_config()).expect("read example config");
    let reordered = config.replacen(
        r#"bankruptcy_waterfall = ["venue_claims", "insurance", "socialize"]"#,
        r#"bankruptcy_waterfall = ["insurance", "venue_claims", "socialize"]"#,
        1,
    );
    assert_ne!(reordered, config, "the example lists all three steps");
    dir.write("reordered.toml", reordered);
    dir.ballast(&["check", "reordered.toml"])
        .expect_code(0)
        .stdout_has(
            "\nbankruptcy_waterfall                 insurance -> venue_claims -> socialize\n",
        );
}

const BROKEN_CONFIG: &str = r#"
[protocol]
name = "broken"
quote_asset = "USDT"
liquidation_end_fraction = "0.5"
liquidation_insurance_share = "0.25"
liquidation_max_step_notional = "5000000"
insurance_unstake_cooldown_s = 604800
socialized_loss_withdrawal_pause_s = 86400
bankruptcy_waterfall = ["insurance", "socialize"]

[[tier]]
name = "major"
max_maintenance_asset_weight = "0.95"
min_maintenance_liability_weight = "1.05"
insurance_cap_per_bankruptcy = "1000000"

[[asset]]
symbol = "BTC"
decimals = 8
tier = "major"
collateral = "cross"
initial_asset_weight = "0.8"
maintenance_asset_weight = "1.2"
initial_liability_weight = "1.2"
maintenance_liability_weight = "1.1"
size_premium_factor = "0"
concentration_threshold = "0"
deposit_cap = "100"
borrow_cap = "10"
reserve_factor = "0.1"
liquidation_fee = "0.05"
[asset.oracle]
max_staleness_s = 60
max_confidence = "0.01"
max_divergence = "0.1"
reference_time_constant_s = 3600
[asset.interest]
base_rate = "0"
kinks = ["0.8"]
slopes = ["0.04", "0.75"]
max_rate = "1"

[[asset]]
symbol = "ETH"
decimals = 18
tier = "blue-chip"
collateral = "cross"
initial_asset_weight = "0.95"
maintenance_asset_weight = "0.9"
initial_liability_weight = "1.2"
maintenance_liability_weight = "1.1"
size_premium_factor = "0"
concentration_threshold = "0"
deposit_cap = "100"
borrow_cap = "10"
reserve_factor = "0.1"
liquidation_fee = "0.05"
[asset.oracle]
max_staleness_s = 60
max_confidence = "0.01"
max_divergence = "0.1"
reference_time_constant_s = 3600
[asset.interest]
base_rate = "0"
kinks = ["0.8"]
slopes = ["0.04", "0.75"]
max_rate = "1"
"#;

#[test]
fn check_lists_every_error_with_asset_and_field() {
    let dir = TempDir::new("check_broken");
    dir.write("broken.toml", BROKEN_CONFIG);
    let out = dir.ballast(&["check", "broken.toml"]);
    out.expect_code(2);
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for an invalid file{out}"
    );
    let expected = [
        // weight above 1 (and above the tier's bound)
        "broken.toml: asset BTC: maintenance_asset_weight 1.2 exceeds 1",
        "broken.toml: asset BTC: maintenance_asset_weight 1.2 exceeds tier major's max_maintenance_asset_weight 0.95",
        // initial looser than maintenance
        "broken.toml: asset ETH: initial_asset_weight 0.95 exceeds maintenance_asset_weight 0.9",
        // unknown tier
        "broken.toml: asset ETH: tier blue-chip is not a defined [[tier]]",
        // missing quote asset
        "broken.toml: protocol: quote_asset USDT is not a listed asset",
    ];
    let lines: Vec<&str> = out.stderr.lines().collect();
    for needle in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(needle)),
            "no stderr line starts with {needle:?}{out}"
        );
    }
    assert!(
        lines.iter().all(|l| l.starts_with("broken.toml: ")),
        "every error line names the file{out}"
    );
}

#[test]
fn check_reports_unreadable_and_unparsable_files_in_one_line() {
    let dir = TempDir::new("check_unreadable");
    let out = dir.ballast(&["check", "no-such-file.toml"]);
    out.expect_code(2)
        .stderr_has("error: cannot read protocol file no-such-file.toml");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");

    dir.write("bad.toml", "[protocol\nname = 3");
    let out = dir.ballast(&["check", "bad.toml"]);
    out.expect_code(2).stderr_has("bad.toml: TOML parse error");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");

    dir.write("binary.toml", [0xff, 0xfe, 0x00, 0x41]);
    dir.ballast(&["check", "binary.toml"])
        .expect_code(2)
        .stderr_has("is not UTF-8");

    // A directory is not a file either.
    dir.ballast(&["check", "."])
        .expect_code(2)
        .stderr_has("error: cannot read");
}

// ----- run -------------------------------------------------------------------------------------------------------

#[test]
fn run_example_produces_the_documented_session() {
    let dir = TempDir::new("run_example");
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--summary",
    ]);
    out.expect_code(0);
    let lines = out.json_lines();
    // Every line carries the number of the command that produced it; they never go backwards.
    let mut last_seq = 0;
    for line in &lines[..lines.len() - 1] {
        let seq = line["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq in {line}{out}"));
        assert!(seq >= last_seq, "seq went backwards at {line}{out}");
        last_seq = seq;
    }

    // The BTC drop puts owner 2's sub-account 1 below maintenance, and the repayment brings it back.
    let calls = out.of_type("margin_call");
    assert_eq!(calls.len(), 1, "{out}");
    assert_eq!(calls[0]["sub_account"], 1, "{out}");
    assert_eq!(calls[0]["owner"], 2, "{out}");
    assert!(
        calls[0]["maintenance_health"]
            .as_str()
            .is_some_and(|h| h.starts_with('-')),
        "{out}"
    );
    assert_eq!(out.of_type("margin_recovered").len(), 1, "{out}");

    // The expected rejections, with their codes and messages.
    let rejections = out.of_type("rejection");
    let codes: Vec<&str> = rejections
        .iter()
        .map(|r| r["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "isolated_only_asset",
            "insufficient_health",
            "stale_oracle",
            "insufficient_health"
        ],
        "{out}"
    );
    let message = |i: usize| rejections[i]["message"].as_str().unwrap_or("").to_string();
    assert!(
        message(1).starts_with("withdraw of 20000 USDC would leave initial health at -")
            && message(1).ends_with(" USDC"),
        "{out}"
    );
    assert!(message(2).contains("oracle for USDC is stale"), "{out}");

    // One event of every other kind the example is meant to show.
    for kind in [
        "account_created",
        "sub_account_opened",
        "price_updated",
        "deposited",
        "withdrawn",
        "transferred",
        "interest_accrued",
        "asset_listed",
        "perp_filled",
        "funding_updated",
        "market_risk_set",
    ] {
        assert!(!out.of_type(kind).is_empty(), "no {kind} event{out}");
    }
    // The borrow shows as a negative balance and a `borrowed` amount.
    let borrow = &out.of_type("withdrawn")[0];
    assert_eq!(borrow["borrowed"], "80000", "{out}");
    assert_eq!(borrow["balance"], "-80000", "{out}");

    // The summary closes the output.
    let summary = out.last_line();
    assert_eq!(summary["type"], "summary", "{out}");
    assert!(is_sha256_hex(&summary["state_hash"]), "{out}");
    let commands = summary["commands"].as_u64().unwrap_or(0);
    assert_eq!(commands, last_seq, "{out}");
    assert_eq!(
        summary["applied"].as_u64().unwrap_or(0) + summary["rejected"].as_u64().unwrap_or(0),
        commands,
        "{out}"
    );
    assert_eq!(summary["rejected"], 4, "{out}");
    assert_eq!(
        summary["sub_accounts"].as_array().map(Vec::len),
        Some(6),
        "{out}"
    );
    assert_eq!(
        summary["sub_accounts"][3]["margin"]["isolated"], "MNGO",
        "{out}"
    );
    assert_eq!(summary["sub_accounts"][1]["balances"]["BTC"], "2", "{out}");
    assert!(
        summary["sub_accounts"][1]["health"]["maintenance"].is_string(),
        "{out}"
    );
    assert_eq!(summary["pools"][0]["asset"], "USDC", "{out}");
    assert!(summary["pools"][0]["borrow_rate"].is_string(), "{out}");
    assert!(summary["treasury"]["USDC"].is_string(), "{out}");
}

#[test]
fn run_example_trades_perps_and_summarizes_positions_and_markets() {
    let dir = TempDir::new("run_perps");
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--summary",
    ]);
    out.expect_code(0);

    // Sub-account 4 buys 0.5 BTC-PERP from 5 at 56010: fees are 0.05% and 0.02% of 28005 USD.
    let fills = out.of_type("perp_filled");
    assert_eq!(fills.len(), 1, "{out}");
    let fill = &fills[0];
    for (field, value) in [
        ("market", "BTC-PERP"),
        ("side", "buy"),
        ("size", "0.5"),
        ("price", "56010"),
        ("taker_fee", "14.0025"),
        ("maker_fee", "5.601"),
        ("taker_base", "0.5"),
        ("maker_base", "-0.5"),
        ("open_interest", "0.5"),
    ] {
        assert_eq!(fill[field], value, "{field}{out}");
    }
    assert_eq!(
        (&fill["taker"], &fill["maker"]),
        (&4.into(), &5.into()),
        "{out}"
    );

    // The first sample sets rate 0; an hour later the mark is 100 above the oracle's 56500: the premium is clamped to
    // 0.0005, the rate from then on. Nothing has accrued yet; the prints an hour later accrue the hour at that rate:
    // 56500 * 0.0005 = 28.25 USD per BTC.
    let funding = out.of_type("funding_updated");
    assert_eq!(funding.len(), 2, "{out}");
    assert_eq!(funding[0]["rate"], "0", "{out}");
    assert_eq!(funding[1]["market"], "BTC-PERP", "{out}");
    assert_eq!(funding[1]["rate"], "0.0005", "{out}");
    assert_eq!(funding[1]["funding_index"], "0", "{out}");
    assert_eq!(
        out.last_line()["markets"][0]["funding_index"],
        "28.25",
        "{out}"
    );

    let risk = out.of_type("market_risk_set");
    assert_eq!(risk.len(), 1, "{out}");
    assert_eq!(risk[0]["market"], "ETH-PERP", "{out}");
    assert_eq!(risk[0]["reduce_only"], true, "{out}");
    assert_eq!(risk[0]["paused"], false, "{out}");
    assert_eq!(risk[0]["margin_multiplier"], "2", "{out}");
    assert_eq!(risk[0]["phase_s"], 86400, "{out}");

    // Adding 5 BTC-PERP is refused: the taker's initial health would go negative.
    let refused = out.of_type("rejection").pop().expect("a rejection");
    assert_eq!(refused["code"], "insufficient_health", "{out}");
    assert!(
        refused["message"].as_str().is_some_and(|m| m
            .starts_with("BTC-PERP fill (taker sub-account 4) would leave initial health at -")),
        "{out}"
    );

    // The summary: both positions (base in whole BTC, quote in USD, funding not yet settled) ...
    let summary = out.last_line();
    let position = |id: usize| &summary["sub_accounts"][id]["perps"];
    assert_eq!(
        position(4),
        &serde_json::json!([{"market":"BTC-PERP","base":"0.5","quote":"-28019.0025","funding_snapshot":"0"}]),
        "{out}"
    );
    assert_eq!(
        position(5),
        &serde_json::json!([{"market":"BTC-PERP","base":"-0.5","quote":"27999.399","funding_snapshot":"0"}]),
        "{out}"
    );
    assert_eq!(position(0), &serde_json::json!([]), "{out}");
    // ... and every market in listing order, numbers as decimal strings.
    let markets = summary["markets"].as_array().expect("a markets array");
    let symbols: Vec<&str> = markets
        .iter()
        .filter_map(|m| m["symbol"].as_str())
        .collect();
    assert_eq!(
        symbols,
        [
            "BTC-PERP",
            "ETH-PERP",
            "SOL-PERP",
            "MNGO-PERP",
            "BTC-29DEC23-60000-C",
            "BTC-29DEC23-50000-P"
        ],
        "{out}"
    );
    assert_eq!(
        markets[0],
        serde_json::json!({
            "symbol": "BTC-PERP",
            "underlying": "BTC",
            "oracle_price": "56500",
            "open_interest": "0.5",
            "funding_index": "28.25",
            "fees_collected": "19.6035",
            "insurance_collected": "0",
            "claims_written_off": "0",
            "insurance_paid": "0",
            "socialized_loss": "0",
            "withdrawals_paused_until": 0,
            "reduce_only": false,
            "paused": false,
            "margin_multiplier": "1"
        }),
        "{out}"
    );
    // ETH-PERP went reduce-only with its multiplier phased from 1 to 2 over 86400 s; 7180 s later it is at
    // 1 + 7180 / 86400, rounded up.
    assert_eq!(markets[1]["oracle_price"], "2950", "{out}");
    assert_eq!(markets[1]["reduce_only"], true, "{out}");
    assert_eq!(markets[1]["open_interest"], "0", "{out}");
    assert_eq!(
        markets[1]["margin_multiplier"], "1.083101851851851852",
        "{out}"
    );
}

/// Runs `commands` (one JSON command a line) against the example protocol with `--summary`; every command must
/// apply. Returns the outcome.
fn run_commands(dir: &TempDir, commands: &[&str]) -> Outcome {
    dir.write("commands.jsonl", commands.join("\n"));
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        "commands.jsonl",
        "--summary",
    ]);
    out.expect_code(0);
    assert_eq!(
        out.of_type("rejection"),
        Vec::<serde_json::Value>::new(),
        "{out}"
    );
    out
}

#[test]
fn run_summary_shows_the_counterparty_pool_and_insurance_stakes() {
    let dir = TempDir::new("run_pool_stakes");
    let out = run_commands(
        &dir,
        &[
            r#"{"timestamp":1700000000,"type":"create_account","owner":1}"#,
            r#"{"timestamp":1700000000,"type":"open_sub_account","owner":1,"margin":"cross"}"#,
            r#"{"timestamp":1700000000,"type":"create_account","owner":2}"#,
            r#"{"timestamp":1700000000,"type":"open_sub_account","owner":2,"margin":"cross"}"#,
            r#"{"timestamp":1700000000,"type":"oracle_price","asset":"USDC","price":"1","confidence":"0","publish_time":1700000000}"#,
            r#"{"timestamp":1700000000,"type":"oracle_price","asset":"BTC","price":"56000","confidence":"10","publish_time":1700000000}"#,
            r#"{"timestamp":1700000001,"type":"deposit","sub_account":0,"asset":"USDC","amount":"10000"}"#,
            r#"{"timestamp":1700000001,"type":"deposit","sub_account":1,"asset":"USDC","amount":"5000"}"#,
            r#"{"timestamp":1700000002,"type":"open_counterparty_pool"}"#,
            r#"{"timestamp":1700000003,"type":"pool_deposit","sub_account":0,"amount":"4000"}"#,
            r#"{"timestamp":1700000003,"type":"pool_deposit","sub_account":1,"amount":"1000"}"#,
            r#"{"timestamp":1700000004,"type":"stake_insurance","sub_account":1,"asset":"USDC","amount":"500"}"#,
            r#"{"timestamp":1700000004,"type":"stake_insurance","sub_account":0,"asset":"USDC","amount":"250.5"}"#,
            r#"{"timestamp":1700000005,"type":"request_unstake","sub_account":1,"asset":"USDC","shares":"200"}"#,
            r#"{"timestamp":1700000006,"type":"pool_trade","market":"BTC-PERP","sub_account":1,"side":"buy","size":"0.01"}"#,
        ],
    );
    let summary = out.last_line();
    // The first deposit into an empty pool buys one share per USD; the second, at a share price of 1, as many. The
    // pool then sold 0.01 BTC at 56,000 plus the oracle's confidence (10) plus an impact of 280 / 500,000,000 (half
    // the trade's 560 USD over the impact depth): it is worth 0.100314 USD more.
    assert_eq!(
        summary["counterparty_pool"],
        serde_json::json!({
            "sub_account": 2,
            "total_shares": "5000",
            "value": "5000.100314",
            "providers": [
                {"sub_account": 0, "shares": "4000"},
                {"sub_account": 1, "shares": "1000"}
            ]
        }),
        "{out}"
    );
    // The pool is an ordinary sub-account of the reserved owner: its deposit and its side of the trade.
    let pool = &summary["sub_accounts"][2];
    assert_eq!(pool["owner"], ballast_engine::POOL_OWNER, "{out}");
    assert_eq!(pool["balances"]["USDC"], "5000", "{out}");
    assert_eq!(pool["perps"][0]["market"], "BTC-PERP", "{out}");
    assert_eq!(pool["perps"][0]["base"], "-0.01", "{out}");
    // Stakes by sub-account; the first stake in an empty fund buys one share per token (USDC's 6 decimals).
    assert_eq!(
        summary["insurance_stakes"],
        serde_json::json!([
            {"sub_account": 0, "asset": "USDC", "shares": "250.5", "unstake_shares": "0",
             "unstake_requested_s": 0},
            {"sub_account": 1, "asset": "USDC", "shares": "500", "unstake_shares": "200",
             "unstake_requested_s": 1700000005}
        ]),
        "{out}"
    );
    assert_eq!(summary["pools"][0]["insurance_shares"], "750.5", "{out}");
}

#[test]
fn run_summary_shows_each_markets_loss_ledger() {
    let dir = TempDir::new("run_loss_ledger");
    // Sub-account 0 (1,000 USDC) buys 0.3 BTC-PERP at 56,000 from 1 (fees 8.4 and 3.36); sub-account 2 stakes 100
    // USDC of insurance. BTC falls to 51,000: the long is worth 1,000 - 8.4 - 0.3 * 5,000 = -508.4 USD. It pays its
    // 1,000 USDC to the short, and the rest is resolved: the venue's 11.76 of fees, then the whole 100 USDC fund,
    // then 396.64 by auto-deleveraging the short.
    let out = run_commands(
        &dir,
        &[
            r#"{"timestamp":1700000000,"type":"create_account","owner":1}"#,
            r#"{"timestamp":1700000000,"type":"open_sub_account","owner":1,"margin":"cross"}"#,
            r#"{"timestamp":1700000000,"type":"create_account","owner":2}"#,
            r#"{"timestamp":1700000000,"type":"open_sub_account","owner":2,"margin":"cross"}"#,
            r#"{"timestamp":1700000000,"type":"create_account","owner":3}"#,
            r#"{"timestamp":1700000000,"type":"open_sub_account","owner":3,"margin":"cross"}"#,
            r#"{"timestamp":1700000000,"type":"oracle_price","asset":"USDC","price":"1","confidence":"0","publish_time":1700000000}"#,
            r#"{"timestamp":1700000000,"type":"oracle_price","asset":"BTC","price":"56000","confidence":"10","publish_time":1700000000}"#,
            r#"{"timestamp":1700000001,"type":"deposit","sub_account":0,"asset":"USDC","amount":"1000"}"#,
            r#"{"timestamp":1700000001,"type":"deposit","sub_account":1,"asset":"USDC","amount":"100000"}"#,
            r#"{"timestamp":1700000001,"type":"deposit","sub_account":2,"asset":"USDC","amount":"1000"}"#,
            r#"{"timestamp":1700000002,"type":"stake_insurance","sub_account":2,"asset":"USDC","amount":"100"}"#,
            r#"{"timestamp":1700000003,"type":"perp_fill","market":"BTC-PERP","taker":0,"maker":1,"side":"buy","size":"0.3","price":"56000"}"#,
            r#"{"timestamp":1700000004,"type":"oracle_price","asset":"BTC","price":"51000","confidence":"10","publish_time":1700000004}"#,
            r#"{"timestamp":1700000005,"type":"settle_pnl","market":"BTC-PERP","winner":1,"loser":0}"#,
            r#"{"timestamp":1700000006,"type":"resolve_bankruptcy","target":0}"#,
        ],
    );
    assert_eq!(out.of_type("perp_bankruptcy_resolved").len(), 1, "{out}");
    let summary = out.last_line();
    let btc = &summary["markets"][0];
    assert_eq!(btc["symbol"], "BTC-PERP", "{out}");
    for (field, value) in [
        ("claims_written_off", "11.76"),
        ("insurance_paid", "100"),
        ("socialized_loss", "396.64"),
        // The written-off fees are no longer owed to the venue.
        ("fees_collected", "0"),
        ("insurance_collected", "0"),
        ("open_interest", "0"),
    ] {
        assert_eq!(btc[field], value, "{field}{out}");
    }
    // The deleveraging pauses the market's traders' withdrawals for a day (socialized_loss_withdrawal_pause_s).
    assert_eq!(btc["withdrawals_paused_until"], 1700000006 + 86400, "{out}");
    // The stake remains, its fund spent; no pool was opened.
    assert_eq!(
        summary["insurance_stakes"],
        serde_json::json!([{"sub_account": 2, "asset": "USDC", "shares": "100", "unstake_shares": "0",
                            "unstake_requested_s": 0}]),
        "{out}"
    );
    assert_eq!(summary["pools"][0]["insurance_fund"], "0", "{out}");
    assert!(summary["counterparty_pool"].is_null(), "{out}");
}

#[test]
fn run_output_has_no_floats() {
    let dir = TempDir::new("run_no_floats");
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--summary",
    ]);
    out.expect_code(0);
    fn check(value: &serde_json::Value, out: &Outcome) {
        match value {
            serde_json::Value::Number(n) => assert!(n.is_u64(), "non-integer number {n}{out}"),
            serde_json::Value::Array(items) => items.iter().for_each(|v| check(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| check(v, out)),
            _ => {}
        }
    }
    for line in out.json_lines() {
        check(&line, &out);
    }
}

#[test]
fn run_is_deterministic() {
    let dir = TempDir::new("run_deterministic");
    let args = [
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--summary",
    ];
    let first = dir.ballast(&args);
    let second = dir.ballast(&args);
    first.expect_code(0);
    assert_eq!(first.stdout, second.stdout, "{first}{second}");
}

#[test]
fn run_with_malformed_lines_reports_each_and_applies_nothing() {
    let dir = TempDir::new("run_malformed");
    let example = std::fs::read_to_string(example_commands()).expect("read example");
    let mut lines: Vec<String> = example.lines().map(str::to_string).collect();
    // Break two lines after some good ones: a truncated object, and a float amount.
    lines.insert(
        9,
        r#"{"timestamp":1700000000,"type":"create_account","#.to_string(),
    );
    lines.insert(
        12,
        r#"{"timestamp":1700000020,"type":"deposit","sub_account":0,"asset":"USDC","amount":1.5}"#
            .to_string(),
    );
    dir.write("bad.jsonl", lines.join("\n"));
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        "bad.jsonl",
        "--log",
        "out.log",
        "--summary",
    ]);
    out.expect_code(2)
        .stderr_has("bad.jsonl line 10: ")
        .stderr_has("bad.jsonl line 13: ")
        .stderr_has("float");
    assert_eq!(out.stderr.lines().count(), 2, "one line per bad line{out}");
    assert!(
        out.stdout.is_empty(),
        "nothing applied, nothing printed{out}"
    );
    assert!(
        !dir.path("out.log").exists(),
        "no log for a run that never started{out}"
    );
}

#[test]
fn run_reports_bad_arguments_and_files_without_panicking() {
    let dir = TempDir::new("run_bad_input");
    let config = example_config();
    dir.ballast(&["run", "--config", &config, "--commands", "missing.jsonl"])
        .expect_code(2)
        .stderr_has("error: cannot read commands file missing.jsonl");
    dir.ballast(&["run", "--config", "missing.toml", "--commands", "x"])
        .expect_code(2)
        .stderr_has("error: cannot read protocol file missing.toml");
    dir.write("c.jsonl", "");
    dir.ballast(&[
        "run",
        "--config",
        &config,
        "--commands",
        "c.jsonl",
        "--genesis",
        "soon",
    ])
    .expect_code(2);
    dir.ballast(&["run", "--config", &config]).expect_code(2);
    dir.ballast(&[
        "run",
        "--config",
        &config,
        "--commands",
        "c.jsonl",
        "--log",
        "no-such-dir/x.log",
    ])
    .expect_code(2)
    .stderr_has("error: cannot create log file no-such-dir/x.log");

    // Junk that parses as JSON but not as commands, and numbers far past every range.
    dir.write(
        "junk.jsonl",
        [
            "[1,2,3]",
            r#"{"type":"create_account","owner":1}"#,
            r#"{"timestamp":-1,"type":"create_account","owner":1}"#,
            r#"{"timestamp":1,"type":"create_account","owner":1e400}"#,
            r#"{"timestamp":1,"type":"deposit","sub_account":0,"asset":"USDC","amount":"1e5"}"#,
            r#"{"timestamp":1,"type":"deposit","sub_account":0,"asset":"USDC","amount":"999999999999999999999999999999"}"#,
            r#"{"timestamp":1,"type":"launch_rocket"}"#,
            r#"{"timestamp":1,"type":"create_account","owner":1,"extra":true}"#,
        ]
        .join("\n"),
    );
    let out = dir.ballast(&["run", "--config", &config, "--commands", "junk.jsonl"]);
    out.expect_code(2);
    assert_eq!(out.stderr.lines().count(), 8, "{out}");
    for n in 1..=8 {
        out.stderr_has(&format!("junk.jsonl line {n}: "));
    }

    // Valid commands with extreme values: rejected or applied, never a crash.
    dir.write(
        "extreme.jsonl",
        [
            r#"{"timestamp":1,"type":"create_account","owner":18446744073709551615}"#,
            r#"{"timestamp":1,"type":"open_sub_account","owner":18446744073709551615,"margin":"cross"}"#,
            r#"{"timestamp":2,"type":"oracle_price","asset":"BTC","price":"170141183460469231731687303.715884105727","confidence":"0","publish_time":2}"#,
            r#"{"timestamp":3,"type":"deposit","sub_account":0,"asset":"BTC","amount":"50000"}"#,
            r#"{"timestamp":3,"type":"withdraw","sub_account":0,"asset":"USDC","amount":"1000000000"}"#,
            r#"{"timestamp":3,"type":"deposit","sub_account":4294967295,"asset":"ETH","amount":"0.000000000000000001"}"#,
            r#"{"timestamp":18446744073709551615,"type":"accrue_interest"}"#,
            r#"{"timestamp":0,"type":"create_account","owner":2}"#,
        ]
        .join("\n"),
    );
    let out = dir.ballast(&[
        "run",
        "--config",
        &config,
        "--commands",
        "extreme.jsonl",
        "--summary",
    ]);
    out.expect_code(0);
    assert!(!out.of_type("rejection").is_empty(), "{out}");
    assert!(is_sha256_hex(&out.last_line()["state_hash"]), "{out}");
}

// ----- log and replay --------------------------------------------------------------------------------------------

/// Runs the example with `--log run.log --summary` in `dir`; returns the summary line.
fn run_with_log(dir: &TempDir) -> serde_json::Value {
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--log",
        "run.log",
        "--summary",
    ]);
    out.expect_code(0);
    out.last_line()
}

#[test]
fn run_log_then_replay_gives_the_same_state_hash() {
    let dir = TempDir::new("replay_same_hash");
    let summary = run_with_log(&dir);
    let log = dir.read("run.log");
    // Header plus one entry per command, rejected ones included.
    assert_eq!(
        log.lines().count() as u64,
        1 + summary["commands"].as_u64().unwrap_or(0),
        "{log}"
    );
    assert!(
        log.starts_with(r#"{"format":"ballast-command-log","version":1,"config_sha256":""#),
        "{log}"
    );

    let out = dir.ballast(&[
        "replay",
        "--config",
        &example_config(),
        "--log",
        "run.log",
        "--summary",
    ]);
    out.expect_code(0);
    let lines = out.json_lines();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["type"], "replayed", "{out}");
    assert_eq!(lines[0]["commands"], summary["commands"], "{out}");
    assert_eq!(lines[0]["state_hash"], summary["state_hash"], "{out}");
    // The whole summary matches, not just the hash.
    assert_eq!(lines[1], summary, "{out}");
}

#[test]
fn run_with_explicit_genesis_is_logged_and_replayed() {
    let dir = TempDir::new("replay_genesis");
    let out = dir.ballast(&[
        "run",
        "--config",
        &example_config(),
        "--commands",
        &example_commands(),
        "--log",
        "run.log",
        "--genesis",
        "1699999000",
        "--summary",
    ]);
    out.expect_code(0);
    assert!(dir.read("run.log").contains(r#""genesis":1699999000"#));
    let replayed = dir.ballast(&["replay", "--config", &example_config(), "--log", "run.log"]);
    replayed.expect_code(0);
    assert_eq!(
        replayed.last_line()["state_hash"],
        out.last_line()["state_hash"],
        "{out}{replayed}"
    );
}

#[test]
fn replay_of_a_tampered_log_fails_clearly() {
    let dir = TempDir::new("replay_tampered");
    run_with_log(&dir);
    let log = dir.read("run.log");

    // Change one amount in the middle: the next line's hash link no longer matches.
    let tampered = log.replacen(r#""amount":"80000""#, r#""amount":"90000""#, 1);
    assert_ne!(tampered, log, "the example borrows 80000 USDC");
    dir.write("tampered.log", &tampered);
    let out = dir.ballast(&[
        "replay",
        "--config",
        &example_config(),
        "--log",
        "tampered.log",
    ]);
    out.expect_code(2)
        .stderr_has("error: tampered.log: line ")
        .stderr_has("hash chain broken");
    assert!(out.stdout.is_empty(), "{out}");

    // Drop a line: the sequence has a gap.
    let mut lines: Vec<&str> = log.lines().collect();
    lines.remove(5);
    dir.write("cut.log", lines.join("\n"));
    dir.ballast(&["replay", "--config", &example_config(), "--log", "cut.log"])
        .expect_code(2)
        .stderr_has("error: cut.log: line 6: seq 6, expected 5");

    // Not a log at all.
    dir.write("empty.log", "");
    dir.ballast(&[
        "replay",
        "--config",
        &example_config(),
        "--log",
        "empty.log",
    ])
    .expect_code(2)
    .stderr_has("empty log");
}

#[test]
fn replay_against_another_protocol_file_fails_clearly() {
    let dir = TempDir::new("replay_other_config");
    run_with_log(&dir);
    // Same protocol, one byte different (a comment): the log was not written against it.
    let config = std::fs::read_to_string(example_config()).expect("read example config");
    dir.write("changed.toml", format!("{config}\n# edited\n"));
    let out = dir.ballast(&["replay", "--config", "changed.toml", "--log", "run.log"]);
    out.expect_code(2)
        .stderr_has("error: run.log was written against a different protocol file")
        .stderr_has("changed.toml has ");
    assert!(out.stdout.is_empty(), "{out}");
}
