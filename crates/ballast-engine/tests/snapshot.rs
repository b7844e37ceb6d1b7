//! Snapshots: `Engine::snapshot` is exactly what the state hash hashes, `Engine::from_snapshot` restores an engine
//! that goes on exactly like the original, and no input, however broken, makes restoring panic or return an engine
//! that fails its invariants. Every test prints its seed; `BALLAST_SEED=N` reproduces a run.

mod common;

use ballast_engine::{Command, Engine, SnapshotError};
use common::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The three kinds of seeded stream, each with the engine it runs on: spot lending (the example protocol), perps
/// with liquidations, the counterparty pool and the waterfall (the example protocol), options with portfolio margin
/// and expiry (the flat protocol).
fn stream(kind: u8, seed: u64) -> (Engine, Vec<Command>) {
    match kind {
        0 => (engine(), random_stream(seed, 300)),
        1 => (engine(), perp_stream(seed, 6, 10)),
        _ => (
            Engine::new(flat_config(), GENESIS),
            option_stream(seed, 6, 10),
        ),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Restores `engine`'s snapshot and checks the copy: same hash, same snapshot, invariants hold.
fn restore(engine: &Engine) -> Engine {
    let bytes = engine.snapshot();
    let restored = Engine::from_snapshot(&bytes).unwrap_or_else(|e| panic!("restore: {e}"));
    restored
        .check_invariants()
        .unwrap_or_else(|e| panic!("restored engine breaks an invariant: {e}"));
    assert_eq!(restored.state_hash(), engine.state_hash());
    assert_eq!(restored.snapshot(), bytes);
    restored
}

proptest! {
    #![proptest_config(proptest_config("snapshot_restore_replay", 6, 0x5_4A95))]

    /// Snapshot at a random point of a random stream, restore, then apply the rest to both engines: the same result
    /// (events or rejection) and the same state hash after every command.
    #[test]
    fn a_restored_engine_goes_on_exactly_like_the_original(
        kind in 0u8..3,
        stream_seed in 0u64..1_000,
        cut_per_mille in 0u64..=1_000,
    ) {
        let (mut original, commands) = stream(kind, stream_seed);
        let cut = commands.len() * cut_per_mille as usize / 1_000;
        for command in &commands[..cut] {
            let _ = original.apply(command);
        }
        let mut restored = restore(&original);
        for (i, command) in commands[cut..].iter().enumerate() {
            let a = original.apply(command);
            let b = restored.apply(command);
            prop_assert_eq!(&a, &b, "kind {} seed {} cut {}: command {} of the rest", kind, stream_seed, cut, i);
            prop_assert_eq!(original.state_hash(), restored.state_hash());
        }
        restored.check_invariants().unwrap();
    }
}

#[test]
fn the_snapshot_is_exactly_what_the_state_hash_hashes() {
    let base = seed("snapshot_is_hashed", 0x54A5);
    let mut n_states = 0;
    for kind in 0..3 {
        let (mut engine, commands) = stream(kind, base + kind as u64);
        assert_eq!(sha256_hex(&engine.snapshot()), engine.state_hash());
        for (i, command) in commands.iter().enumerate() {
            let _ = engine.apply(command);
            if i % 7 == 0 {
                assert_eq!(
                    sha256_hex(&engine.snapshot()),
                    engine.state_hash(),
                    "kind {kind}, after command {i}"
                );
                n_states += 1;
            }
        }
    }
    assert!(n_states > 100, "{n_states} states checked");
}

#[test]
fn a_new_engine_restores_and_the_example_hash_is_unchanged() {
    let engine = engine();
    let restored = restore(&engine);
    assert_eq!(restored.now_s(), GENESIS);
    assert!(restored.sub_accounts().is_empty());
}

/// A small engine with every kind of state: balances and borrows, perp and option positions, a portfolio-margined
/// sub-account, stakes, the counterparty pool.
fn small_engine() -> Engine {
    let (mut engine, commands) = stream(2, seed("small_snapshot", 0x5A11));
    for command in &commands[..commands.len() / 2] {
        let _ = engine.apply(command);
    }
    engine
}

fn check_refused_or_sound(bytes: &[u8]) -> Option<SnapshotError> {
    match Engine::from_snapshot(bytes) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            Some(e)
        }
        Ok(engine) => {
            engine
                .check_invariants()
                .unwrap_or_else(|e| panic!("a restored engine breaks an invariant: {e}"));
            assert_eq!(
                engine.snapshot(),
                bytes,
                "an accepted snapshot is canonical"
            );
            None
        }
    }
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let bytes = small_engine().snapshot();
    assert!(Engine::from_snapshot(&bytes).is_ok());
    for len in 0..bytes.len() {
        match Engine::from_snapshot(&bytes[..len]) {
            Err(SnapshotError::Truncated { offset, .. }) => assert!(offset <= len),
            Err(SnapshotError::FormatTag { .. }) => assert!(len < 24, "prefix of {len} bytes"),
            Err(e) => panic!("prefix of {len} bytes: unexpected {e}"),
            Ok(_) => panic!("prefix of {len} bytes restored"),
        }
    }
}

#[test]
fn errors_name_the_field_and_the_rule() {
    let mut v = Venue::new(example_config());
    v.all_prices();
    let s = v.sub(1, ballast_engine::MarginSpec::Cross);
    v.deposit(s, "USDC", "1000");
    let engine = v.engine;
    let bytes = engine.snapshot();
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        Engine::from_snapshot(&extra).unwrap_err(),
        SnapshotError::TrailingBytes {
            offset: bytes.len(),
            count: 3
        }
    );
    let mut tag = bytes.clone();
    tag[8 + 15] = b'9';
    let e = Engine::from_snapshot(&tag).unwrap_err();
    assert!(e.to_string().contains("ballast-state-v9"), "{e}");
    // The last sub-account's first balance: its asset index, then its scaled units.
    let last = engine.sub_accounts().last().unwrap();
    assert!(
        !last.balances.is_empty() && last.perps.is_empty(),
        "{last:?}"
    );
    let start = bytes.len() - 8 - last.balances.len() * 24;
    let mut beyond = bytes.clone();
    beyond[start..start + 8].copy_from_slice(&(engine.assets().len() as u64).to_le_bytes());
    let e = Engine::from_snapshot(&beyond).unwrap_err();
    assert!(
        matches!(e, SnapshotError::OutOfRange { offset, .. } if offset == start),
        "{e}"
    );
    assert!(e.to_string().contains("balance 0 asset"), "{e}");
    let mut zero = bytes.clone();
    zero[start + 8..start + 24].copy_from_slice(&0i128.to_le_bytes());
    let e = Engine::from_snapshot(&zero).unwrap_err();
    assert!(e.to_string().contains("non-zero"), "{e}");
    let mut skewed = bytes.clone();
    let scaled = i128::from_le_bytes(bytes[start + 8..start + 24].try_into().unwrap());
    skewed[start + 8..start + 24].copy_from_slice(&(scaled + 1).to_le_bytes());
    let e = Engine::from_snapshot(&skewed).unwrap_err();
    assert!(matches!(e, SnapshotError::Inconsistent { .. }), "{e}");
    // JSON that parses but is spelled differently is refused as not canonical; JSON that does not parse names its
    // part.
    let json_start = 8 + 16 + 8 + 8 + 8;
    assert_eq!(bytes[json_start], b'{');
    let mut broken = bytes.clone();
    broken[json_start] = b' ';
    let e = Engine::from_snapshot(&broken).unwrap_err();
    assert!(
        matches!(e, SnapshotError::ConfigJson { ref part, .. } if part == "protocol section"),
        "{e}"
    );
    let mut spaced = bytes[..json_start + 1].to_vec();
    spaced.push(b' ');
    spaced.extend_from_slice(&bytes[json_start + 1..]);
    let len = u64::from_le_bytes(bytes[json_start - 8..json_start].try_into().unwrap());
    spaced[json_start - 8..json_start].copy_from_slice(&(len + 1).to_le_bytes());
    assert_eq!(
        Engine::from_snapshot(&spaced).unwrap_err(),
        SnapshotError::NotCanonical {
            offset: json_start - 8
        }
    );
}

proptest! {
    #![proptest_config(proptest_config("snapshot_byte_flips", 1_000, 0xF11B))]

    /// Random byte changes are refused (or, where they land on a field any value of which is a valid state, restore
    /// an engine that passes its invariants and re-encodes to exactly those bytes); nothing panics.
    ///
    /// Most of a small snapshot is configuration JSON, so half the cases damage only the state after it.
    #[test]
    fn damaged_snapshots_never_panic_nor_restore_a_broken_engine(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        state_only in any::<bool>(),
    ) {
        let (bytes, state_start) = SMALL.with(|s| s.clone());
        let mut damaged = bytes.clone();
        let from = if state_only { state_start } else { 0 };
        for (at, value) in &flips {
            let i = from + at.index(damaged.len() - from);
            damaged[i] ^= value | 1;
        }
        let refused = check_refused_or_sound(&damaged);
        OUTCOMES.with(|o| o.borrow_mut()[refused.is_some() as usize] += 1);
    }

    /// Garbage, with and without a valid format tag in front, is refused.
    #[test]
    fn garbage_is_refused(garbage in proptest::collection::vec(any::<u8>(), 0..2_000), tagged in any::<bool>()) {
        let mut bytes = Vec::new();
        if tagged {
            bytes.extend_from_slice(&16u64.to_le_bytes());
            bytes.extend_from_slice(b"ballast-state-v4");
        }
        bytes.extend_from_slice(&garbage);
        prop_assert!(Engine::from_snapshot(&bytes).is_err());
    }
}

thread_local! {
    /// The small engine's snapshot, and where its last market's state starts (after every configuration part).
    static SMALL: (Vec<u8>, usize) = {
        let engine = small_engine();
        let bytes = engine.snapshot();
        let last_market = serde_json::to_vec(engine.market_configs().last().unwrap()).unwrap();
        let at = bytes
            .windows(last_market.len())
            .position(|w| w == last_market.as_slice())
            .unwrap();
        (bytes, at + last_market.len())
    };
    /// Damaged snapshots restored and refused.
    static OUTCOMES: std::cell::RefCell<[u32; 2]> = const { std::cell::RefCell::new([0, 0]) };
}

#[test]
fn most_damaged_snapshots_are_refused() {
    damaged_snapshots_never_panic_nor_restore_a_broken_engine();
    let [restored, refused] = OUTCOMES.with(|o| *o.borrow());
    println!("damaged snapshots: {restored} restored (valid states), {refused} refused");
    assert!(
        refused > 4 * restored,
        "{restored} restored, {refused} refused"
    );
}
