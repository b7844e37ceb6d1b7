//! Oracle prices and the guard rails that decide when a price may be trusted for new risk.
//!
//! Each asset keeps its latest oracle price (price, confidence half-width, publish time) and a slow *reference
//! price*: an exponential moving average of the oracle in publish time, `ref += (price - ref) * (1 - e^(-dt/tau))`.
//! A manipulated or crashing oracle moves the reference only slowly, so the initial health check values assets at
//! `min(oracle, reference)` and liabilities at `max(oracle, reference)`.
//!
//! A price is *reliable* for new risk when it is fresh (`now - publish_time <= max_staleness_s`), tight
//! (`confidence / price <= max_confidence`) and close to the reference (`|price - ref| / ref <= max_divergence`).
//! An unreliable price never blocks deposits, repayments, or withdrawals that keep initial health non-negative with
//! the unreliable asset counted at zero; it blocks borrowing that asset and any action whose check would depend on
//! its value. Maintenance health (margin calls) always uses the latest price.

use crate::config::OracleConfig;
use ballast_num::{NumResult, Price, Ratio, Rounding};
use serde::Serialize;
use std::fmt;

/// The latest accepted oracle observation of one asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OraclePrice {
    pub price: Price,
    /// Half-width of the oracle's confidence interval, in price units.
    pub confidence: Price,
    /// When the oracle published it, seconds (the oracle's clock, never later than the sequencer's).
    pub publish_time_s: u64,
    /// The slow reference price after this observation.
    pub reference: Price,
}

/// Why a price may not be trusted for new risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceProblem {
    Missing,
    Stale { age_s: u64, limit_s: u64 },
    Uncertain { confidence: Ratio, limit: Ratio },
    Divergent { divergence: Ratio, limit: Ratio },
}

impl fmt::Display for PriceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceProblem::Missing => write!(f, "has no price yet"),
            PriceProblem::Stale { age_s, limit_s } => {
                write!(f, "is stale: {age_s} s old, limit {limit_s} s")
            }
            PriceProblem::Uncertain { confidence, limit } => {
                write!(
                    f,
                    "is too uncertain: confidence {} of price, limit {}",
                    confidence, limit
                )
            }
            PriceProblem::Divergent { divergence, limit } => {
                write!(
                    f,
                    "diverges {} from its reference price, limit {}",
                    divergence, limit
                )
            }
        }
    }
}

impl PriceProblem {
    /// Stable rejection code for this problem.
    pub fn code(&self) -> &'static str {
        match self {
            PriceProblem::Missing => "no_price",
            PriceProblem::Stale { .. } => "stale_oracle",
            PriceProblem::Uncertain { .. } => "uncertain_oracle",
            PriceProblem::Divergent { .. } => "divergent_oracle",
        }
    }
}

impl OraclePrice {
    /// The first observation of an asset: the reference starts at the price.
    pub fn first(price: Price, confidence: Price, publish_time_s: u64) -> OraclePrice {
        OraclePrice {
            price,
            confidence,
            publish_time_s,
            reference: price,
        }
    }

    /// The next observation; the caller has checked `publish_time_s > self.publish_time_s`.
    pub fn next(
        &self,
        price: Price,
        confidence: Price,
        publish_time_s: u64,
        config: &OracleConfig,
    ) -> NumResult<OraclePrice> {
        // The blend covers at most `max_staleness_s`: after a pause in the feed, one print moves the reference no
        // more than a fresh print would, so a single manipulated print cannot drag its own reference along and pass
        // the divergence check.
        let elapsed = publish_time_s
            .saturating_sub(self.publish_time_s)
            .min(config.max_staleness_s) as i128;
        // weight = 1 - exp(-elapsed / tau), in [0, 1).
        let exponent = Ratio::from_fraction(
            -elapsed,
            config.reference_time_constant_s as i128,
            Rounding::Floor,
        )?;
        let weight = Ratio::ONE.checked_sub(exponent.exp()?)?.max(Ratio::ZERO);
        let step = price
            .checked_sub(self.reference)?
            .mul_ratio(weight, Rounding::Floor)?;
        // Between the old reference and the new price (rounding may not push it outside), so always positive.
        let reference = self
            .reference
            .checked_add(step)?
            .max(price.min(self.reference))
            .min(price.max(self.reference));
        Ok(OraclePrice {
            price,
            confidence,
            publish_time_s,
            reference,
        })
    }

    /// The first guard rail this price fails at sequencer time `now_s`, if any.
    pub fn problem(&self, now_s: u64, config: &OracleConfig) -> NumResult<Option<PriceProblem>> {
        let age_s = now_s.saturating_sub(self.publish_time_s);
        if age_s > config.max_staleness_s {
            return Ok(Some(PriceProblem::Stale {
                age_s,
                limit_s: config.max_staleness_s,
            }));
        }
        let confidence =
            Ratio::from_fraction(self.confidence.raw(), self.price.raw(), Rounding::Ceil)?;
        if confidence > config.max_confidence {
            return Ok(Some(PriceProblem::Uncertain {
                confidence,
                limit: config.max_confidence,
            }));
        }
        let divergence = self.price.relative_distance_ceil(self.reference)?;
        if divergence > config.max_divergence {
            return Ok(Some(PriceProblem::Divergent {
                divergence,
                limit: config.max_divergence,
            }));
        }
        Ok(None)
    }

    /// Price for valuing collateral in the initial check: `min(oracle, reference)`.
    #[inline]
    pub fn initial_asset_price(&self) -> Price {
        self.price.min(self.reference)
    }

    /// Price for valuing debt in the initial check: `max(oracle, reference)`.
    #[inline]
    pub fn initial_liability_price(&self) -> Price {
        self.price.max(self.reference)
    }
}
