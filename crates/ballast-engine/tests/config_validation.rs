//! A protocol file is validated in full: every broken rule is reported, each naming the asset and field, and a bad
//! file (or a bad asset listed later by command) changes nothing.

mod common;

use ballast_engine::{CommandKind, ProtocolConfig};
use common::*;

fn example_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/protocol.toml"
    ))
    .unwrap()
}

/// Replaces the first occurrence of `from` after the line `symbol = "<asset>"`.
fn edit(text: &str, asset: &str, from: &str, to: &str) -> String {
    let start = text
        .find(&format!("symbol = \"{asset}\""))
        .expect("asset in example");
    let at = start + text[start..].find(from).expect("field in asset");
    format!("{}{}{}", &text[..at], to, &text[at + from.len()..])
}

fn errors(text: &str) -> Vec<String> {
    ProtocolConfig::from_toml("protocol.toml", text)
        .expect_err("must be invalid")
        .0
}

#[test]
fn each_rule_is_reported_with_asset_and_field() {
    let cases: Vec<(String, &str)> = vec![
        (edit(&example_text(), "SOL", "maintenance_asset_weight = \"0.8\"", "maintenance_asset_weight = \"1.05\""),
         "protocol.toml: asset SOL: maintenance_asset_weight 1.05 exceeds 1"),
        (edit(&example_text(), "BTC", "initial_asset_weight = \"0.8\"", "initial_asset_weight = \"0.95\""),
         "protocol.toml: asset BTC: initial_asset_weight 0.95 exceeds maintenance_asset_weight 0.9 (initial must be stricter)"),
        (edit(&example_text(), "ETH", "initial_liability_weight = \"1.2\"", "initial_liability_weight = \"1.05\""),
         "asset ETH: initial_liability_weight 1.05 is below maintenance_liability_weight 1.1 (initial must be stricter)"),
        (edit(&example_text(), "MNGO", "maintenance_asset_weight = \"0.5\"", "maintenance_asset_weight = \"0.75\""),
         "asset MNGO: maintenance_asset_weight 0.75 exceeds tier long-tail's max_maintenance_asset_weight 0.7"),
        (edit(&example_text(), "ETH", "tier = \"major\"", "tier = \"blue-chip\""),
         "asset ETH: tier blue-chip is not a defined [[tier]]"),
        (edit(&example_text(), "BTC", "borrow_cap = \"10000\"", "borrow_cap = \"60000\""),
         "asset BTC: borrow_cap 60000 exceeds deposit_cap 50000"),
        (edit(&example_text(), "USDC", "deposit_cap = \"2000000000\"", "deposit_cap = \"1.0000001\""),
         "asset USDC: deposit_cap 1.0000001 has more decimal places than the asset's 6"),
        (edit(&example_text(), "USDC", "reserve_factor = \"0.1\"", "reserve_factor = \"1\""),
         "asset USDC: reserve_factor 1 must be at least 0 and below 1"),
        (edit(&example_text(), "SOL", "kinks = [\"0.5\", \"0.9\"]", "kinks = [\"0.9\", \"0.5\"]"),
         "asset SOL: interest.kinks 0.5 must be above 0.9 and below 1 (kinks strictly increase)"),
        (edit(&example_text(), "BTC", "slopes = [\"0.04\", \"3\"]", "slopes = [\"0.04\"]"),
         "asset BTC: interest.slopes has 1 entries; it needs one more than kinks (2)"),
        (edit(&example_text(), "BTC", "max_staleness_s = 60", "max_staleness_s = 0"),
         "asset BTC: oracle.max_staleness_s must be positive"),
        (edit(&example_text(), "BTC", "decimals = 8", "decimals = 19"), "asset BTC: decimals 19 exceeds 18"),
        (example_text().replace("quote_asset = \"USDC\"", "quote_asset = \"USDT\""),
         "protocol: quote_asset USDT is not a listed asset"),
        (example_text().replacen("symbol = \"ETH\"", "symbol = \"BTC\"", 1), "asset BTC: listed twice"),
    ];
    for (text, expected) in cases {
        let errors = errors(&text);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let mut text = edit(
        &example_text(),
        "SOL",
        "maintenance_asset_weight = \"0.8\"",
        "maintenance_asset_weight = \"1.05\"",
    );
    text = edit(&text, "ETH", "tier = \"major\"", "tier = \"nope\"");
    text = text.replace(
        "liquidation_end_fraction = \"0.5\"",
        "liquidation_end_fraction = \"1.5\"",
    );
    let errors = errors(&text);
    assert!(errors.len() >= 3, "{errors:#?}");
    assert!(
        errors.iter().all(|e| e.starts_with("protocol.toml: ")),
        "{errors:#?}"
    );
}

#[test]
fn syntax_errors_name_the_place() {
    // A float where an exact decimal string is needed, an unknown field, a missing field.
    let float = edit(
        &example_text(),
        "BTC",
        "initial_asset_weight = \"0.8\"",
        "initial_asset_weight = 0.8",
    );
    let e = errors(&float).join("\n");
    assert!(
        e.contains("is a float; write it as a decimal string") && e.contains("line"),
        "{e}"
    );
    let unknown = edit(
        &example_text(),
        "BTC",
        "decimals = 8",
        "decimals = 8\nfavourite_colour = \"orange\"",
    );
    let e = errors(&unknown).join("\n");
    assert!(e.contains("unknown field `favourite_colour`"), "{e}");
    let missing = edit(&example_text(), "BTC", "reserve_factor = \"0.1\"\n", "");
    let e = errors(&missing).join("\n");
    assert!(e.contains("missing field `reserve_factor`"), "{e}");
}

#[test]
fn a_bad_asset_listed_by_command_changes_nothing() {
    let mut v = Venue::new(flat_config());
    let mut asset = v.engine.assets()[1].clone();
    asset.symbol = "WBTC".into();
    asset.maintenance_asset_weight = "1.2".parse().unwrap();
    let r = v.rejected(CommandKind::ListAsset {
        asset: Box::new(asset.clone()),
    });
    assert_eq!(r.code, "bad_asset");
    assert!(
        r.message
            .contains("asset WBTC: maintenance_asset_weight 1.2 exceeds 1"),
        "{}",
        r.message
    );
    asset.maintenance_asset_weight = "0.9".parse().unwrap();
    v.ok(CommandKind::ListAsset {
        asset: Box::new(asset.clone()),
    });
    assert_eq!(v.engine.asset_index("WBTC"), Some(5));
    let r = v.rejected(CommandKind::ListAsset {
        asset: Box::new(asset),
    });
    assert_eq!(r.code, "duplicate_asset");
}

#[test]
fn the_pool_quotes_at_most_as_many_markets_as_a_sub_account_holds_positions() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/protocol.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut file: ballast_engine::config::ProtocolFile = toml::from_str(&text).unwrap();
    let template = file.market[0].clone();
    // Three pooled markets in the example, and enough copies to pass the position limit.
    for i in 0..ballast_engine::limits::MAX_PERP_POSITIONS_PER_SUB_ACCOUNT {
        let mut m = template.clone();
        m.symbol = format!("BTC{i}-PERP");
        file.market.push(m);
    }
    let errors = ballast_engine::ProtocolConfig::from_file(file).unwrap_err();
    assert!(errors.to_string().contains("[market.pool]"), "{errors}");
}
