//! Every collection the engine holds has a named maximum. Commands that would pass one are rejected.

/// Listed assets (an asset index fits in a `u16`).
pub const MAX_ASSETS: usize = 64;
/// Bytes in an asset or market symbol (room for option series names such as `BTC-29DEC23-60000-C`).
pub const MAX_SYMBOL_LEN: usize = 24;
/// Account owners.
pub const MAX_OWNERS: usize = 1 << 22;
/// Sub-accounts one owner may open.
pub const MAX_SUB_ACCOUNTS_PER_OWNER: usize = 16;
/// Sub-accounts in the whole engine (a sub-account id fits in a `u32`).
pub const MAX_SUB_ACCOUNTS: usize = 1 << 24;
/// Distinct token balances (deposits or borrows) one sub-account may hold.
pub const MAX_BALANCES_PER_SUB_ACCOUNT: usize = 8;

/// Largest step of the sequencer clock between two commands: one 366-day year. Together with annual rates capped at
/// 100, one accrual's exponent stays far inside `exp`'s range.
pub const MAX_CLOCK_JUMP_S: u64 = 366 * 86_400;
/// Markets: perpetuals and option series.
pub const MAX_MARKETS: usize = 256;
/// Positions (perps and options) one sub-account may hold.
pub const MAX_PERP_POSITIONS_PER_SUB_ACCOUNT: usize = 24;
/// Largest open-interest cap a perp tier may set, USD.
pub const MAX_OPEN_INTEREST_USD: i128 = 10_000_000_000_000;

/// Highest oracle price accepted: 10^12 USD per whole token.
pub const MAX_PRICE: ballast_num::Price =
    ballast_num::Price::from_raw(1_000_000_000_000 * ballast_num::PRICE_SCALE);
/// Largest deposit or borrow cap (and concentration threshold), in whole tokens: 10^15. With prices capped at
/// 10^12 USD, every balance is worth less than 10^27 USD, so valuation never overflows.
pub const MAX_CAP_TOKENS: i128 = 1_000_000_000_000_000;

const _: () = assert!(MAX_ASSETS <= u16::MAX as usize);
const _: () = assert!(MAX_SUB_ACCOUNTS <= u32::MAX as usize);
const _: () = assert!(MAX_OWNERS * MAX_SUB_ACCOUNTS_PER_OWNER >= MAX_SUB_ACCOUNTS);
const _: () = assert!(MAX_BALANCES_PER_SUB_ACCOUNT <= MAX_ASSETS);
const _: () = assert!(MAX_MARKETS <= u16::MAX as usize);
const _: () = assert!(MAX_PERP_POSITIONS_PER_SUB_ACCOUNT <= MAX_MARKETS);
