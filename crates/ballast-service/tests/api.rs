//! The HTTP API, end to end on loopback: signed commands, reads, refusals that change nothing, authentication, the
//! WebSocket stream and a restart from the store. Every test runs against embedded SQLite, and against PostgreSQL
//! when `BALLAST_TEST_POSTGRES_URL` is set (`scripts/test` sets it).

use ballast_engine::{CommandKind, MarginSpec, ProtocolConfig};
use ballast_num::{Price, TokenQuantity};
use ballast_service::auth::{Envelope, KeysConfig};
use ballast_service::client::Signer;
use ballast_service::service::{start, Options, Running};
use ballast_store::Location;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

const CONFIG: &str = include_str!("../../../examples/protocol.toml");

static POSTGRES: Mutex<()> = Mutex::new(());

struct Keys {
    admin: Signer,
    oracle: Signer,
    matcher: Signer,
}

fn keys() -> Keys {
    Keys {
        admin: Signer::for_label("admin"),
        oracle: Signer::for_label("oracle"),
        matcher: Signer::for_label("matcher"),
    }
}

fn keys_config(k: &Keys) -> KeysConfig {
    let mut oracles = BTreeMap::new();
    for asset in ["USDC", "BTC", "ETH", "SOL", "MNGO"] {
        oracles.insert(asset.to_string(), vec![k.oracle.public()]);
    }
    KeysConfig {
        admin: k.admin.public(),
        matchers: vec![k.matcher.public()],
        oracles,
    }
}

/// A running service and a tokio runtime to run it on.
struct Harness {
    runtime: tokio::runtime::Runtime,
    running: Option<Running>,
    base: String,
}

impl Harness {
    fn start(location: &Location) -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime
            .block_on(start(Options {
                config_bytes: CONFIG.as_bytes().to_vec(),
                config: ProtocolConfig::from_toml("protocol.toml", CONFIG).unwrap(),
                keys: keys_config(&keys()),
                location: location.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
            }))
            .unwrap();
        let base = format!("http://{}", running.addr);
        Harness {
            runtime,
            running: Some(running),
            base,
        }
    }

    fn stop(mut self) -> String {
        let running = self.running.take().unwrap();
        self.runtime.block_on(running.stop()).unwrap()
    }

    /// POSTs raw bytes; returns the status and the JSON body.
    fn post_raw(&self, body: &[u8]) -> (u16, Value) {
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut r = agent
            .post(&format!("{}/v1/commands", self.base))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn post(&self, envelope: &Envelope) -> (u16, Value) {
        self.post_raw(&serde_json::to_vec(envelope).unwrap())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut r = agent.get(&format!("{}{path}", self.base)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.get(path);
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Waits until the replica has applied log entry `seq`.
    fn wait_for(&self, seq: u64) {
        for _ in 0..500 {
            if self.get_json("/v1/status")["seq"].as_u64().unwrap() >= seq {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the replica never reached seq {seq}");
    }
}

fn qty(s: &str) -> TokenQuantity {
    s.parse().unwrap()
}

fn price_cmd(asset: &str, p: &str, at: u64) -> CommandKind {
    let price: Price = p.parse().unwrap();
    CommandKind::OraclePrice {
        asset: asset.into(),
        price,
        confidence: Price::from_raw(price.raw() / 1000),
        publish_time: at,
    }
}

fn now_s() -> u64 {
    ballast_service::service::wall_clock_s()
}

/// Runs `test` against a fresh SQLite directory, then a fresh PostgreSQL database if one is configured.
fn each_backend(test: impl Fn(&dyn Fn() -> Location)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    test(&|| Location::Sqlite(path.clone()));
    match std::env::var("BALLAST_TEST_POSTGRES_URL") {
        Ok(url) => {
            let _guard = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .batch_execute("DROP TABLE IF EXISTS ballast_meta, ballast_log, ballast_snapshots")
                .unwrap();
            test(&|| Location::Postgres(url.clone()));
        }
        Err(_) if std::env::var_os("BALLAST_REQUIRE_POSTGRES").is_some() => {
            panic!("BALLAST_REQUIRE_POSTGRES is set but BALLAST_TEST_POSTGRES_URL is not")
        }
        Err(_) => eprintln!("BALLAST_TEST_POSTGRES_URL not set: PostgreSQL not tested here"),
    }
}

/// Alice registers owner 1, opens sub-account 0 and deposits; prices for USDC and BTC. Returns the last seq.
fn alice_deposits(h: &Harness, alice: &mut Signer, k: &mut Keys) -> u64 {
    let at = now_s();
    for (asset, p) in [("USDC", "1"), ("BTC", "60000")] {
        let (s, b) = h.post(&k.oracle.sign(price_cmd(asset, p, at)));
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = h.post(&alice.sign(CommandKind::CreateAccount { owner: 1 }));
    assert_eq!(s, 200, "{b}");
    let (s, b) = h.post(&alice.sign(CommandKind::OpenSubAccount {
        owner: 1,
        margin: MarginSpec::Cross,
    }));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["events"][0]["type"], "sub_account_opened");
    let (s, b) = h.post(&alice.sign(CommandKind::Deposit {
        sub_account: 0,
        asset: "BTC".into(),
        amount: qty("2"),
    }));
    assert_eq!(s, 200, "{b}");
    b["seq"].as_u64().unwrap()
}

#[test]
fn signed_commands_are_sequenced_applied_and_readable() {
    each_backend(|location| {
        let h = Harness::start(&location());
        let mut k = keys();
        let mut alice = Signer::for_label("alice");
        let seq = alice_deposits(&h, &mut alice, &mut k);
        assert_eq!(seq, 5);
        // A borrow the engine refuses (the USDC pool is empty) is sequenced, its nonce spent, but changes nothing:
        // 422 with its seq.
        let (s, b) = h.post(&alice.sign(CommandKind::Withdraw {
            sub_account: 0,
            asset: "USDC".into(),
            amount: qty("1000000"),
            reduce_only: false,
        }));
        assert_eq!(s, 422, "{b}");
        assert_eq!(b["status"], "rejected");
        assert_eq!(b["error"]["code"], "insufficient_liquidity");
        assert_eq!(b["seq"], 6);
        // The replica shows what the sequencer applied.
        h.wait_for(6);
        let sub = h.get_json("/v1/sub_accounts/0");
        assert_eq!(sub["owner"], 1);
        assert_eq!(sub["balances"]["BTC"], "2");
        assert!(
            sub["health"]["maintenance"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 0.0
        );
        assert_eq!(h.get_json("/v1/accounts/1")["sub_accounts"], json!([0]));
        let pools = h.get_json("/v1/pools");
        assert_eq!(pools["pools"][1]["asset"], "BTC");
        assert_eq!(pools["pools"][1]["total_supplied"], "2");
        assert!(
            h.get_json("/v1/markets")["markets"]
                .as_array()
                .unwrap()
                .len()
                >= 4
        );
        assert!(h.get_json("/v1/insurance")["funds"].is_array());
        let events = h.get_json("/v1/events?after=0&limit=1000");
        let types: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap())
            .collect();
        assert!(
            types.contains(&"price_updated") && types.contains(&"deposited"),
            "{types:?}"
        );
        let mine = h.get_json("/v1/events?sub_account=0");
        assert!(mine["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event"]["sub_account"] == 0));
        let status = h.get_json("/v1/status");
        assert_eq!(status["seq"], 6);
        let (s, metrics) = h.get("/metrics");
        assert_eq!(s, 200);
        assert!(
            metrics.contains("ballast_commands_applied_total 5"),
            "{metrics}"
        );
        assert!(
            metrics
                .contains("ballast_commands_rejected_total{reason=\"insufficient_liquidity\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("ballast_log_entries 6"), "{metrics}");
        let (s, openapi) = h.get("/openapi.json");
        assert_eq!(s, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&openapi).unwrap()["openapi"],
            "3.0.3"
        );
        let (s, page) = h.get("/");
        assert_eq!(s, 200);
        assert!(page.contains("uPlot"));
        let hash = status["state_hash"].as_str().unwrap().to_string();
        assert_eq!(h.stop(), hash, "the sequencer and the replica agree");
    });
}

#[test]
fn bad_requests_get_a_4xx_and_change_nothing() {
    each_backend(|location| {
        let h = Harness::start(&location());
        let mut k = keys();
        let mut alice = Signer::for_label("alice");
        alice_deposits(&h, &mut alice, &mut k);
        h.wait_for(5);
        let before = h.get_json("/v1/status");
        let code =
            |(s, b): (u16, Value)| (s, b["error"]["code"].as_str().unwrap_or("").to_string());

        // Malformed JSON, unknown fields (in the envelope and in the command), a bad amount, a huge body.
        assert_eq!(code(h.post_raw(b"{not json")), (400, "bad_json".into()));
        let mut good = serde_json::to_value(alice.sign(CommandKind::Deposit {
            sub_account: 0,
            asset: "BTC".into(),
            amount: qty("1"),
        }))
        .unwrap();
        let mut extra = good.clone();
        extra["extra"] = json!(1);
        assert_eq!(
            code(h.post_raw(extra.to_string().as_bytes())),
            (400, "bad_json".into())
        );
        let mut unknown_field = good.clone();
        unknown_field["command"]["colour"] = json!("red");
        assert_eq!(
            code(h.post_raw(unknown_field.to_string().as_bytes())),
            (400, "bad_json".into())
        );
        let mut bad_amount = good.clone();
        bad_amount["command"]["amount"] = json!("1e3");
        assert_eq!(
            code(h.post_raw(bad_amount.to_string().as_bytes())),
            (400, "bad_json".into())
        );
        let huge = vec![b' '; 70 * 1024];
        assert_eq!(code(h.post_raw(&huge)), (413, "body_too_large".into()));

        // A tampered command no longer matches its signature; a garbled signature is refused too.
        let mut tampered = good.clone();
        tampered["command"]["amount"] = json!("100");
        let (s, b) = h.post_raw(tampered.to_string().as_bytes());
        assert_eq!(
            (s, b["error"]["code"].as_str().unwrap()),
            (401, "bad_signature")
        );
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ballast-command-v1"));
        good["signature"] = json!("zz");
        assert_eq!(
            code(h.post_raw(good.to_string().as_bytes())),
            (400, "bad_signature".into())
        );

        // Reads of what does not exist, and unknown routes.
        assert_eq!(h.get("/v1/sub_accounts/99").0, 404);
        assert_eq!(h.get("/v1/sub_accounts/abc").0, 400);
        assert_eq!(h.get("/v1/accounts/7").0, 404);
        assert_eq!(h.get("/v1/events?limit=x").0, 400);
        assert_eq!(h.get("/v1/nothing").0, 404);

        h.wait_for(5);
        let after = h.get_json("/v1/status");
        assert_eq!(before["state_hash"], after["state_hash"]);
        assert_eq!(after["seq"], 5, "nothing was logged");
        let (_, metrics) = h.get("/metrics");
        assert!(
            metrics.contains(
                "ballast_requests_refused_total{status=\"401\",reason=\"bad_signature\"} 1"
            ),
            "{metrics}"
        );
        h.stop();
    });
}

#[test]
fn nobody_acts_for_someone_else_replays_a_command_or_pushes_a_price_without_the_key() {
    each_backend(|location| {
        let h = Harness::start(&location());
        let mut k = keys();
        let mut alice = Signer::for_label("alice");
        let mut mallory = Signer::for_label("mallory");
        alice_deposits(&h, &mut alice, &mut k);
        let (s, b) = h.post(&mallory.sign(CommandKind::CreateAccount { owner: 2 }));
        assert_eq!(s, 200, "{b}");
        let (s, b) = h.post(&mallory.sign(CommandKind::OpenSubAccount {
            owner: 2,
            margin: MarginSpec::Cross,
        }));
        assert_eq!(s, 200, "{b}");
        h.wait_for(7);
        let before = h.get_json("/v1/status");
        let code =
            |(s, b): (u16, Value)| (s, b["error"]["code"].as_str().unwrap_or("").to_string());
        let forbidden = (403, "not_authorized".to_string());

        // Mallory may not move Alice's funds, take her owner id, open sub-accounts for her, or liquidate with them.
        let steal = CommandKind::Withdraw {
            sub_account: 0,
            asset: "BTC".into(),
            amount: qty("2"),
            reduce_only: false,
        };
        assert_eq!(code(h.post(&mallory.sign(steal.clone()))), forbidden);
        let transfer = CommandKind::Transfer {
            from: 0,
            to: 1,
            asset: "BTC".into(),
            amount: qty("1"),
        };
        assert_eq!(code(h.post(&mallory.sign(transfer))), forbidden);
        assert_eq!(
            code(h.post(&mallory.sign(CommandKind::CreateAccount { owner: 1 }))),
            forbidden
        );
        let open_for_alice = CommandKind::OpenSubAccount {
            owner: 1,
            margin: MarginSpec::Cross,
        };
        assert_eq!(code(h.post(&mallory.sign(open_for_alice))), forbidden);
        // Nor push a price, a fill or an administrative command.
        assert_eq!(
            code(h.post(&mallory.sign(price_cmd("BTC", "1", now_s())))),
            forbidden
        );
        let fill = CommandKind::PerpFill {
            market: "BTC-PERP".into(),
            taker: 1,
            maker: 0,
            side: ballast_engine::command::Side::Buy,
            size: qty("1"),
            price: "60000".parse().unwrap(),
        };
        assert_eq!(code(h.post(&mallory.sign(fill))), forbidden);
        let register = CommandKind::RegisterLiquidator { sub_account: 1 };
        assert_eq!(code(h.post(&mallory.sign(register))), forbidden);
        // The oracle key is only an oracle for the assets it is configured for.
        assert_eq!(
            code(h.post(&k.oracle.sign(price_cmd("JTO", "2", now_s())))),
            forbidden
        );
        // An unknown key may not even run permissionless commands.
        let mut stranger = Signer::for_label("stranger");
        let accrue = CommandKind::AccrueInterest { asset: None };
        assert_eq!(code(h.post(&stranger.sign(accrue.clone()))), forbidden);
        // Mallory may run them: she is a registered owner.
        assert_eq!(h.post(&mallory.sign(accrue)).0, 200);

        // A replayed envelope (same nonce) is refused, as is going back; Alice's own next nonce still works.
        let deposit = alice.sign(CommandKind::Deposit {
            sub_account: 0,
            asset: "USDC".into(),
            amount: qty("10"),
        });
        assert_eq!(h.post(&deposit).0, 200);
        assert_eq!(code(h.post(&deposit)), (409, "stale_nonce".into()));
        let old = alice.sign_with_nonce(steal, 2);
        assert_eq!(code(h.post(&old)), (409, "stale_nonce".into()));
        // Nonces may skip ahead.
        alice.set_last_nonce(1_000);
        let (s, b) = h.post(&alice.sign(CommandKind::Deposit {
            sub_account: 0,
            asset: "USDC".into(),
            amount: qty("1"),
        }));
        assert_eq!(s, 200, "{b}");
        h.wait_for(10);
        let sub = h.get_json("/v1/sub_accounts/0");
        assert_eq!(sub["balances"]["BTC"], "2", "Alice's BTC untouched");
        assert_eq!(sub["balances"]["USDC"], "11");
        assert_ne!(before["state_hash"], h.get_json("/v1/status")["state_hash"]);
        h.stop();
    });
}

#[test]
fn a_restart_recovers_the_log_state_hash_and_nonces() {
    each_backend(|location| {
        let h = Harness::start(&location());
        let mut k = keys();
        let mut alice = Signer::for_label("alice");
        alice_deposits(&h, &mut alice, &mut k);
        let replayable = alice.sign(CommandKind::Deposit {
            sub_account: 0,
            asset: "BTC".into(),
            amount: qty("1"),
        });
        assert_eq!(h.post(&replayable).0, 200);
        let hash = h.stop();

        let h = Harness::start(&location());
        let status = h.get_json("/v1/status");
        assert_eq!(status["seq"], 6);
        assert_eq!(status["state_hash"].as_str().unwrap(), hash);
        let (s, b) = h.post(&replayable);
        assert_eq!(
            (s, b["error"]["code"].as_str().unwrap()),
            (409, "stale_nonce")
        );
        // Alice is still owner 1: her next command goes through, Mallory's does not.
        assert_eq!(
            h.post(&alice.sign(CommandKind::Withdraw {
                sub_account: 0,
                asset: "BTC".into(),
                amount: qty("1"),
                reduce_only: true,
            }))
            .0,
            200
        );
        let mut mallory = Signer::for_label("mallory");
        assert_eq!(
            h.post(&mallory.sign(CommandKind::CreateAccount { owner: 1 }))
                .0,
            403
        );
        h.stop();
    });
}

#[test]
fn the_stream_delivers_committed_events_live_and_per_account() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(&Location::Sqlite(dir.path().to_path_buf()));
    let mut k = keys();
    let mut alice = Signer::for_label("alice");
    let ws_base = h.base.replace("http://", "ws://");
    let (mut all, mut only_0) = h.runtime.block_on(async {
        let (all, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/stream"))
            .await
            .unwrap();
        let (mine, _) =
            tokio_tungstenite::connect_async(format!("{ws_base}/v1/stream?sub_account=0"))
                .await
                .unwrap();
        (all, mine)
    });
    alice_deposits(&h, &mut alice, &mut k);
    let next = |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        h.runtime.block_on(async {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .unwrap();
            serde_json::from_str(m.to_text().unwrap()).unwrap()
        })
    };
    let first = next(&mut all);
    assert_eq!(first["event"]["type"], "price_updated");
    assert_eq!(first["seq"], 1);
    let mut seen = vec![first];
    while seen.len() < 7 {
        seen.push(next(&mut all));
    }
    let types: Vec<_> = seen.iter().map(|e| e["event"]["type"].clone()).collect();
    // The example's option series expired in 2023: the first BTC price fixes both settlement prices.
    assert_eq!(
        types,
        json!([
            "price_updated",
            "price_updated",
            "settlement_price_fixed",
            "settlement_price_fixed",
            "account_created",
            "sub_account_opened",
            "deposited"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    assert_eq!(seen[6]["seq"], 5);
    // The per-account stream skips the prices and the account creation.
    let mine = next(&mut only_0);
    assert_eq!(mine["event"]["type"], "sub_account_opened");
    assert_eq!(next(&mut only_0)["event"]["type"], "deposited");
    h.stop();
}
