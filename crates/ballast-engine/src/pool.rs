//! Lending pools: one per asset, holding the tokens depositors lent and tracking what borrowers owe.
//!
//! Balances are stored *scaled* against two cumulative indices, so that accrual is O(1) per pool whatever the
//! number of accounts: a deposit of `scaled` units is worth `scaled * supply_index` native tokens, a borrow of
//! `scaled` units owes `scaled * borrow_index`. Indices are [`Ratio`]s (scale 10^18) starting at 1.
//!
//! ## Exact conservation
//! Every token is accounted for in *index units* (native units times 10^18), where nothing is ever rounded away:
//!
//! ```text
//! vault * 10^18 + borrows_scaled * borrow_index == deposits_scaled * supply_index + rounding_surplus
//! ```
//!
//! `vault` is the tokens the pool holds, `deposits_scaled` includes the treasury's share, and `rounding_surplus`
//! (always >= 0) collects the remainders of every rounding, each of which is taken in the venue's favour: a
//! deposit credits `floor`, a withdrawal debits `ceil`, a borrow books `ceil`, a repayment credits `floor`, and
//! accrual rounds the borrow index up and the supply index down. [`Pool::check_conservation`] verifies the
//! identity exactly in 256 bits.
//!
//! ## Interest
//! The annual borrow rate comes from the asset's [`InterestCurve`] at the current utilization
//! `u = borrowed / supplied`. Over `dt` seconds the borrow index grows by `exp(rate * dt / year)` (continuous
//! compounding, with [`ballast_num::math::exp_fixed`]). The interest this creates, `borrows_scaled * Δborrow_index`,
//! goes `(1 - reserve_factor)` to depositors through the supply index and the rest to the treasury, which holds its
//! share as a scaled deposit like any depositor. So the supply rate is `borrow_rate * u * (1 - reserve_factor)`.

use crate::config::{InterestCurve, SECONDS_PER_YEAR};
use ballast_num::{mul_div, NumError, NumResult, Ratio, Rounding, TokenAmount, RATIO_SCALE};
use ruint::aliases::U256;
use serde::Serialize;

/// The state of one asset's lending pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// Sum of all scaled deposits, the treasury's included.
    pub deposits_scaled: i128,
    /// Sum of all scaled borrows (positive).
    pub borrows_scaled: i128,
    pub supply_index: Ratio,
    pub borrow_index: Ratio,
    /// Sequencer time of the last accrual, seconds.
    pub last_accrual_s: u64,
    /// Native tokens held by the pool.
    pub vault: TokenAmount,
    /// The treasury's scaled deposit (part of `deposits_scaled`).
    pub treasury_scaled: i128,
    /// The insurance fund's scaled deposit of this asset (part of `deposits_scaled`): stakes and its share of
    /// liquidation fees.
    pub insurance_scaled: i128,
    /// Shares of this asset's insurance fund outstanding.
    pub insurance_shares: i128,
    /// Ledger: native tokens of bad debt the insurance fund has paid, ever.
    pub bad_debt_covered: TokenAmount,
    /// Ledger: native tokens of bad debt written off against depositors (supply-index haircuts), ever.
    pub socialized_loss: TokenAmount,
    /// Withdrawals and borrows are refused before this time (after a socialized loss).
    pub withdrawals_paused_until_s: u64,
    /// Rounding remainders kept by the venue, in index units (native * 10^18).
    pub rounding_surplus: i128,
    /// Native tokens that ever entered the pool from outside (deposits and repayments).
    pub total_in: TokenAmount,
    /// Native tokens that ever left the pool (withdrawals and borrows).
    pub total_out: TokenAmount,
}

/// What one accrual did, for the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accrual {
    pub borrow_rate: Ratio,
    pub elapsed_s: u64,
    /// Scaled units credited to the treasury.
    pub treasury_scaled: i128,
}

impl Pool {
    pub fn new(now_s: u64) -> Pool {
        Pool {
            deposits_scaled: 0,
            borrows_scaled: 0,
            supply_index: Ratio::ONE,
            borrow_index: Ratio::ONE,
            last_accrual_s: now_s,
            vault: TokenAmount::ZERO,
            treasury_scaled: 0,
            insurance_scaled: 0,
            insurance_shares: 0,
            bad_debt_covered: TokenAmount::ZERO,
            socialized_loss: TokenAmount::ZERO,
            withdrawals_paused_until_s: 0,
            rounding_surplus: 0,
            total_in: TokenAmount::ZERO,
            total_out: TokenAmount::ZERO,
        }
    }

    /// Native value of a scaled deposit, rounded down (a claim is never overstated).
    #[inline]
    pub fn deposit_native(&self, scaled: i128) -> NumResult<TokenAmount> {
        mul_div(
            scaled,
            self.supply_index.raw(),
            RATIO_SCALE,
            Rounding::Floor,
        )
        .map(TokenAmount::from_raw)
    }

    /// Native value of a scaled borrow (positive), rounded up (a debt is never understated).
    #[inline]
    pub fn borrow_native(&self, scaled: i128) -> NumResult<TokenAmount> {
        borrow_native_at(scaled, self.borrow_index)
    }

    /// Native value of a scaled balance of either sign (negative: debt), each rounded against the holder.
    pub fn balance_native(&self, scaled: i128) -> NumResult<TokenAmount> {
        if scaled >= 0 {
            self.deposit_native(scaled)
        } else {
            self.borrow_native(-scaled)?.checked_neg()
        }
    }

    /// Books `amount` entering a balance of `scaled` units: it repays debt first, the rest is deposited. Returns
    /// the new scaled balance and the part that repaid debt.
    pub fn credit(&mut self, scaled: i128, amount: TokenAmount) -> NumResult<(i128, TokenAmount)> {
        let mut scaled = scaled;
        let mut repaid = TokenAmount::ZERO;
        if scaled < 0 {
            repaid = amount.min(self.borrow_native(-scaled)?);
            scaled += self.repay(repaid, -scaled)?;
        }
        let rest = amount.checked_sub(repaid)?;
        if rest.is_positive() {
            debug_assert!(
                scaled >= 0,
                "a repayment that leaves debt uses the whole amount"
            );
            scaled += self.deposit(rest)?;
        }
        Ok((scaled, repaid))
    }

    /// Books `amount` leaving a balance of `scaled` units: from its deposit first, the rest borrowed. Returns the new
    /// scaled balance and the part borrowed. The caller checks liquidity when the tokens leave the pool.
    pub fn debit(&mut self, scaled: i128, amount: TokenAmount) -> NumResult<(i128, TokenAmount)> {
        let held = if scaled > 0 {
            self.deposit_native(scaled)?
        } else {
            TokenAmount::ZERO
        };
        let from_deposit = amount.min(held);
        let mut scaled_after = scaled;
        if from_deposit.is_positive() {
            scaled_after -= self.withdraw(from_deposit, scaled)?;
        }
        let borrowed = amount.checked_sub(from_deposit)?;
        if borrowed.is_positive() {
            debug_assert!(
                scaled_after <= 0,
                "a borrow follows only an emptied deposit"
            );
            scaled_after -= self.borrow(borrowed)?;
        }
        Ok((scaled_after, borrowed))
    }

    /// Native tokens all depositors (and the treasury) can claim.
    pub fn total_supplied(&self) -> NumResult<TokenAmount> {
        self.deposit_native(self.deposits_scaled)
    }

    /// Native tokens all borrowers owe.
    pub fn total_borrowed(&self) -> NumResult<TokenAmount> {
        self.borrow_native(self.borrows_scaled)
    }

    /// The treasury's claim in native tokens.
    pub fn treasury_native(&self) -> NumResult<TokenAmount> {
        self.deposit_native(self.treasury_scaled)
    }

    /// `borrowed / supplied`, rounded up, in [0, 1] (1 when something is borrowed and nothing supplied).
    pub fn utilization(&self) -> NumResult<Ratio> {
        let borrowed = self.total_borrowed()?.raw();
        let supplied = self.total_supplied()?.raw();
        if borrowed <= 0 {
            return Ok(Ratio::ZERO);
        }
        if supplied <= 0 {
            return Ok(Ratio::ONE);
        }
        Ok(Ratio::from_fraction(borrowed, supplied, Rounding::Ceil)?.min(Ratio::ONE))
    }

    /// Annual supply rate implied by a borrow rate: `borrow_rate * u * (1 - reserve_factor)`, rounded down.
    pub fn supply_rate(&self, borrow_rate: Ratio, reserve_factor: Ratio) -> NumResult<Ratio> {
        borrow_rate
            .mul_floor(self.utilization()?)?
            .mul_floor(Ratio::from_raw(RATIO_SCALE - reserve_factor.raw()))
    }

    /// The borrow index this pool would have after accruing to `now_s`, without changing the pool.
    pub fn projected_borrow_index(&self, now_s: u64, curve: &InterestCurve) -> NumResult<Ratio> {
        if now_s <= self.last_accrual_s || self.borrows_scaled == 0 {
            return Ok(self.borrow_index);
        }
        let rate = curve.borrow_rate(self.utilization()?);
        grown_index(self.borrow_index, rate, now_s - self.last_accrual_s)
    }

    /// Accrues interest up to `now_s` (no-op if no time passed).
    pub fn accrue(
        &mut self,
        now_s: u64,
        curve: &InterestCurve,
        reserve_factor: Ratio,
    ) -> NumResult<Accrual> {
        let elapsed_s = now_s.saturating_sub(self.last_accrual_s);
        let borrow_rate = curve.borrow_rate(self.utilization()?);
        let mut outcome = Accrual {
            borrow_rate,
            elapsed_s,
            treasury_scaled: 0,
        };
        if elapsed_s == 0 {
            return Ok(outcome);
        }
        self.last_accrual_s = now_s;
        if self.borrows_scaled == 0 {
            return Ok(outcome);
        }
        let new_borrow_index = grown_index(self.borrow_index, borrow_rate, elapsed_s)?;
        let index_growth = new_borrow_index.raw() - self.borrow_index.raw();
        // Interest created, in index units; may exceed i128 for huge pools, so 256 bits.
        let interest = U256::from(self.borrows_scaled as u128) * U256::from(index_growth as u128);
        let supplier_keep = U256::from((RATIO_SCALE - reserve_factor.raw()) as u128);
        let supplier_share = interest * supplier_keep / U256::from(RATIO_SCALE as u128);
        let supply_index_growth = if self.deposits_scaled > 0 {
            supplier_share / U256::from(self.deposits_scaled as u128)
        } else {
            U256::ZERO
        };
        let distributed = supply_index_growth * U256::from(self.deposits_scaled as u128);
        let remainder = interest - distributed;
        let overflow = NumError::Overflow { op: "Pool::accrue" };
        let supply_index_growth: i128 =
            i128::try_from(supply_index_growth).map_err(|_| overflow)?;
        let new_supply_index = Ratio::from_raw(
            self.supply_index
                .raw()
                .checked_add(supply_index_growth)
                .ok_or(overflow)?,
        );
        let (treasury_scaled, dust) = remainder.div_rem(U256::from(new_supply_index.raw() as u128));
        let treasury_scaled: i128 = i128::try_from(treasury_scaled).map_err(|_| overflow)?;
        let dust: i128 = i128::try_from(dust).map_err(|_| overflow)?;
        self.borrow_index = new_borrow_index;
        self.supply_index = new_supply_index;
        self.deposits_scaled = self
            .deposits_scaled
            .checked_add(treasury_scaled)
            .ok_or(overflow)?;
        self.treasury_scaled = self
            .treasury_scaled
            .checked_add(treasury_scaled)
            .ok_or(overflow)?;
        self.rounding_surplus = self.rounding_surplus.checked_add(dust).ok_or(overflow)?;
        outcome.treasury_scaled = treasury_scaled;
        Ok(outcome)
    }

    /// Books `amount` native tokens entering as a deposit; returns the scaled units credited (rounded down).
    pub fn deposit(&mut self, amount: TokenAmount) -> NumResult<i128> {
        let scaled = mul_div(
            amount.raw(),
            RATIO_SCALE,
            self.supply_index.raw(),
            Rounding::Floor,
        )?;
        let residual = index_residual(amount.raw(), scaled, self.supply_index);
        self.deposits_scaled = checked(self.deposits_scaled.checked_add(scaled), "Pool::deposit")?;
        self.move_in(amount, residual)?;
        Ok(scaled)
    }

    /// Books a withdrawal of `amount` from a deposit of `held_scaled`; returns the scaled units to debit (rounded up,
    /// or the whole deposit when `amount` is all of it). The caller checks `amount <= deposit_native(held_scaled)`.
    pub fn withdraw(&mut self, amount: TokenAmount, held_scaled: i128) -> NumResult<i128> {
        let scaled = if amount == self.deposit_native(held_scaled)? {
            held_scaled
        } else {
            mul_div(
                amount.raw(),
                RATIO_SCALE,
                self.supply_index.raw(),
                Rounding::Ceil,
            )?
        };
        let residual = -index_residual(amount.raw(), scaled, self.supply_index);
        self.deposits_scaled = checked(self.deposits_scaled.checked_sub(scaled), "Pool::withdraw")?;
        self.move_out(amount, residual)?;
        Ok(scaled)
    }

    /// Books a new borrow of `amount` leaving the pool; returns the scaled debt added (rounded up).
    pub fn borrow(&mut self, amount: TokenAmount) -> NumResult<i128> {
        let scaled = mul_div(
            amount.raw(),
            RATIO_SCALE,
            self.borrow_index.raw(),
            Rounding::Ceil,
        )?;
        let residual = -index_residual(amount.raw(), scaled, self.borrow_index);
        self.borrows_scaled = checked(self.borrows_scaled.checked_add(scaled), "Pool::borrow")?;
        self.move_out(amount, residual)?;
        Ok(scaled)
    }

    /// Books a repayment of `amount` against a debt of `owed_scaled`; returns the scaled debt removed (rounded down,
    /// or the whole debt when `amount` repays all of it). The caller checks `amount <= borrow_native(owed_scaled)`.
    pub fn repay(&mut self, amount: TokenAmount, owed_scaled: i128) -> NumResult<i128> {
        let scaled = if amount == self.borrow_native(owed_scaled)? {
            owed_scaled
        } else {
            mul_div(
                amount.raw(),
                RATIO_SCALE,
                self.borrow_index.raw(),
                Rounding::Floor,
            )?
        };
        let residual = index_residual(amount.raw(), scaled, self.borrow_index);
        self.borrows_scaled = checked(self.borrows_scaled.checked_sub(scaled), "Pool::repay")?;
        self.move_in(amount, residual)?;
        Ok(scaled)
    }

    fn move_in(&mut self, amount: TokenAmount, residual: i128) -> NumResult<()> {
        debug_assert!(residual >= 0, "rounding must favour the venue");
        self.vault = self.vault.checked_add(amount)?;
        self.total_in = self.total_in.checked_add(amount)?;
        self.rounding_surplus =
            checked(self.rounding_surplus.checked_add(residual), "Pool::surplus")?;
        Ok(())
    }

    fn move_out(&mut self, amount: TokenAmount, residual: i128) -> NumResult<()> {
        debug_assert!(residual >= 0, "rounding must favour the venue");
        self.vault = self.vault.checked_sub(amount)?;
        self.total_out = self.total_out.checked_add(amount)?;
        self.rounding_surplus =
            checked(self.rounding_surplus.checked_add(residual), "Pool::surplus")?;
        Ok(())
    }

    /// Writes off a scaled debt of `scaled` units against the depositors: the supply index falls by
    /// `ceil(scaled * borrow_index / deposits_scaled)`, the excess of that rounding joins the venue's surplus, and the
    /// exact identity still holds. `recorded` (the native debt not covered otherwise) goes into the
    /// `socialized_loss` ledger and is returned; `None` if the loss would take the supply index to zero (the pool
    /// is insolvent beyond its depositors).
    pub fn socialize(
        &mut self,
        scaled: i128,
        recorded: TokenAmount,
    ) -> NumResult<Option<TokenAmount>> {
        let overflow = NumError::Overflow {
            op: "Pool::socialize",
        };
        let written_off = recorded;
        let loss = U256::from(scaled as u128) * U256::from(self.borrow_index.raw() as u128);
        let depositors = U256::from(self.deposits_scaled as u128);
        if depositors.is_zero() {
            return Ok(None);
        }
        let drop = loss.div_ceil(depositors);
        let drop: i128 = i128::try_from(drop).map_err(|_| overflow)?;
        if drop >= self.supply_index.raw() {
            return Ok(None);
        }
        let excess = depositors * U256::from(drop as u128) - loss;
        let excess: i128 = i128::try_from(excess).map_err(|_| overflow)?;
        self.borrows_scaled = checked(self.borrows_scaled.checked_sub(scaled), "Pool::socialize")?;
        self.supply_index = Ratio::from_raw(self.supply_index.raw() - drop);
        self.rounding_surplus =
            checked(self.rounding_surplus.checked_add(excess), "Pool::socialize")?;
        self.socialized_loss = self.socialized_loss.checked_add(written_off)?;
        Ok(Some(written_off))
    }

    /// Undoes the external-flow counters of an internal move of `amount` (a withdrawal from one holder booked
    /// against a deposit or repayment by another): the vault is unchanged, so neither flow crossed the pool's edge.
    pub fn internal_move(&mut self, amount: TokenAmount) -> NumResult<()> {
        self.total_in = self.total_in.checked_sub(amount)?;
        self.total_out = self.total_out.checked_sub(amount)?;
        Ok(())
    }

    /// Checks the exact conservation identity (module docs) and the token flow `vault == total_in - total_out`.
    pub fn check_conservation(&self) -> Result<(), String> {
        if Some(self.vault.raw()) != self.total_in.raw().checked_sub(self.total_out.raw()) {
            return Err(format!(
                "vault {} != in {} - out {}",
                self.vault.raw(),
                self.total_in.raw(),
                self.total_out.raw()
            ));
        }
        if self.rounding_surplus < 0
            || self.deposits_scaled < 0
            || self.borrows_scaled < 0
            || self.vault.raw() < 0
        {
            return Err(format!("negative pool total: {self:?}"));
        }
        let u = |v: i128| U256::from(v as u128);
        let lhs = u(self.vault.raw()) * u(RATIO_SCALE)
            + u(self.borrows_scaled) * u(self.borrow_index.raw());
        let rhs = u(self.deposits_scaled) * u(self.supply_index.raw()) + u(self.rounding_surplus);
        if lhs != rhs {
            return Err(format!(
                "index-unit identity broken: assets {lhs} != claims {rhs}"
            ));
        }
        Ok(())
    }
}

/// Native value of a scaled borrow at a given index, rounded up.
#[inline]
pub fn borrow_native_at(scaled: i128, borrow_index: Ratio) -> NumResult<TokenAmount> {
    mul_div(scaled, borrow_index.raw(), RATIO_SCALE, Rounding::Ceil).map(TokenAmount::from_raw)
}

/// Largest exponent one `exp` step takes (raw, 10^18 scale): 12.5, far inside `exp_fixed`'s range (about 46.6).
const ACCRUAL_EXPONENT_MAX: i128 = 12_500_000_000_000_000_000;

/// `index * exp(rate * elapsed / year)`, rounded up (the borrower pays the rounding). One `exp` when the exponent
/// is at most 12.5, as it is for any realistic period; a pool left alone for decades at a punitive rate compounds in
/// as many equal steps as keep each exponent below that, instead of overflowing.
fn grown_index(index: Ratio, annual_rate: Ratio, elapsed_s: u64) -> NumResult<Ratio> {
    let exponent = |seconds: u64| {
        mul_div(
            annual_rate.raw(),
            seconds as i128,
            SECONDS_PER_YEAR as i128,
            Rounding::Ceil,
        )
    };
    let total = exponent(elapsed_s)?;
    let n_steps = (total / ACCRUAL_EXPONENT_MAX + 1) as u64; // >= 1; total <= 100 * 2^64 / year, so small
    let step_s = elapsed_s / n_steps;
    let mut index = index;
    for step in 0..n_steps {
        let seconds = if step + 1 == n_steps {
            elapsed_s - step_s * (n_steps - 1)
        } else {
            step_s
        };
        // exp is correctly rounded to the nearest raw unit; one unit more makes the growth an upper bound.
        let growth = Ratio::from_raw(Ratio::from_raw(exponent(seconds)?).exp()?.raw() + 1);
        index = index.mul_ceil(growth)?;
    }
    Ok(index)
}

/// `amount * 10^18 - scaled * index`: what rounding left over, in index units. The true value is below one index
/// step in magnitude, so wrapping arithmetic computes it exactly even when the products exceed `i128`.
#[inline]
fn index_residual(amount: i128, scaled: i128, index: Ratio) -> i128 {
    amount
        .wrapping_mul(RATIO_SCALE)
        .wrapping_sub(scaled.wrapping_mul(index.raw()))
}

#[inline]
fn checked(v: Option<i128>, op: &'static str) -> NumResult<i128> {
    v.ok_or(NumError::Overflow { op })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(kink: &str, slope1: &str, slope2: &str) -> InterestCurve {
        InterestCurve {
            base_rate: Ratio::ZERO,
            kinks: vec![kink.parse().unwrap()],
            slopes: vec![slope1.parse().unwrap(), slope2.parse().unwrap()],
            max_rate: "10".parse().unwrap(),
        }
    }

    #[test]
    fn interest_curve_case_from_the_issue() {
        // Pool at 80% utilization, base 0, kink 80%, slope1 4%, slope2 75%, reserve factor 10%.
        let c = curve("0.8", "0.04", "0.75");
        let mut pool = Pool::new(0);
        pool.deposit(TokenAmount::from_raw(1_000_000)).unwrap();
        pool.borrow(TokenAmount::from_raw(800_000)).unwrap();
        assert_eq!(pool.utilization().unwrap(), "0.8".parse().unwrap());
        let borrow = c.borrow_rate(pool.utilization().unwrap());
        assert_eq!(borrow, "0.04".parse().unwrap());
        assert_eq!(
            pool.supply_rate(borrow, "0.1".parse().unwrap()).unwrap(),
            "0.0288".parse().unwrap()
        );
        assert_eq!(c.borrow_rate(Ratio::ONE), "0.79".parse().unwrap());
    }

    #[test]
    fn a_pool_left_alone_for_decades_still_accrues() {
        let c = curve("0.5", "1", "99");
        let mut pool = Pool::new(0);
        pool.deposit(TokenAmount::from_raw(1_000_000)).unwrap();
        pool.borrow(TokenAmount::from_raw(10)).unwrap();
        // 5 years at 2% utilization: rate 0.04; fine in one step or eight.
        pool.accrue(5 * SECONDS_PER_YEAR, &c, Ratio::ZERO).unwrap();
        pool.check_conservation().unwrap();
        // 30 years at 100% of a 100/year curve would need exp(3000): the index overflows and says so.
        let mut full = Pool::new(0);
        full.deposit(TokenAmount::from_raw(10)).unwrap();
        full.borrow(TokenAmount::from_raw(10)).unwrap();
        assert!(matches!(
            full.accrue(30 * SECONDS_PER_YEAR, &c, Ratio::ZERO),
            Err(NumError::Overflow { .. })
        ));
    }

    #[test]
    fn deposit_withdraw_borrow_repay_conserve_exactly() {
        let mut pool = Pool::new(0);
        pool.supply_index = "1.000000000000000007".parse().unwrap();
        pool.borrow_index = "1.3333333333333333".parse().unwrap();
        let s = pool.deposit(TokenAmount::from_raw(1_000_001)).unwrap();
        pool.check_conservation().unwrap();
        let b = pool.borrow(TokenAmount::from_raw(333_333)).unwrap();
        pool.check_conservation().unwrap();
        pool.repay(TokenAmount::from_raw(100_000), b).unwrap();
        pool.check_conservation().unwrap();
        pool.withdraw(TokenAmount::from_raw(500_000), s).unwrap();
        pool.check_conservation().unwrap();
        assert!(pool.rounding_surplus > 0);
    }
}
