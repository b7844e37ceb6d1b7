//! European options: Black-Scholes with a continuous yield, and Black-76 on a forward.
//!
//! Both models are the same formula written on a forward `F` and a discount factor `D = e^(-rT)`:
//!
//! ```text
//! call = D·(F·N(d1) − K·N(d2))        put = D·(K·N(−d2) − F·N(−d1))
//! d1 = (ln(F/K) + σ²T/2) / (σ√T)      d2 = d1 − σ√T
//! ```
//!
//! - **Black-Scholes** (`Model::BlackScholes`): the underlying is a spot price `S` paying a continuous yield `q`
//!   (a dividend yield, a staking yield, or the foreign rate for a currency), so `F = S·e^((r−q)T)`.
//! - **Black-76** (`Model::Black76`): the underlying *is* the forward (or futures) price `F`, quoted for the
//!   option's expiry; it carries no yield of its own (`q` must be 0).
//!
//! Written with the cost of carry `b` (`b = r − q` for Black-Scholes, `b = 0` for Black-76) and the underlying
//! `U` (`S` or `F`), the price and Greeks are, for `w = +1` (call) or `w = −1` (put):
//!
//! ```text
//! price = w·(U·e^((b−r)T)·N(w·d1) − K·e^(−rT)·N(w·d2))
//! delta = ∂price/∂U  = w·e^((b−r)T)·N(w·d1)
//! gamma = ∂²price/∂U² = e^((b−r)T)·n(d1) / (U·σ√T)
//! vega  = ∂price/∂σ  = U·e^((b−r)T)·n(d1)·√T                      per 1.00 of volatility (σ = 0.20 → 0.21: vega/100)
//! theta = −∂price/∂T = −vega·σ/(2T) − w·(b−r)·U·e^((b−r)T)·N(w·d1) − w·r·K·e^(−rT)·N(w·d2)   per year
//! rho   = ∂price/∂r  = w·K·T·e^(−rT)·N(w·d2)   (Black-Scholes: S and q held, so F moves with r)
//!                    = −T·price                (Black-76: F held, only the discounting moves)   per 1.00 of rate
//! ```
//!
//! Sign conventions: theta is the change of the price as calendar time passes (expiry `T` shrinks) with the
//! underlying, volatility and rates unchanged, in price units per year: usually negative for a long option (divide
//! by 365 for a per-day figure). Delta and gamma are per unit of the underlying (`S` for Black-Scholes, `F` for
//! Black-76). All Greeks are for one long option; a short position has the opposite signs.
//!
//! Units: `expiry_years` in years; `rate`, `dividend_yield` and `vol` are annual decimals (0.05 = 5 %) with
//! continuous compounding; spot, forward, strike and price in the same currency units.
//!
//! The normal CDF `N` is W. J. Cody's rational approximation (module `normal`: within `8·2^−53` relative
//! wherever `N(x)` is a normal f64, so deep out-of-the-money legs keep their relative accuracy). Its tails are a
//! rational function times `e^(−x²/2)`, which the pricer computes once per option and shares: with `x = ln(F/K)`,
//! `d1² − d2² = 2x`, so `e^(−d2²/2) = e^(−d1²/2)·e^x`. The factor is computed at whichever of `d1`, `d2` is smaller in
//! magnitude and multiplied by `e^(−|x|) = min(F, K)/max(F, K)` (computed once per option, in
//! [`EuropeanOption::new`]) for the other; the same factor gives the density `n(d1)` of gamma, vega and theta.
//! So one `exp` serves `N(w·d1)`, `N(w·d2)` and `n(d1)`.
//!
//! Implied volatility: see [`EuropeanOption::implied_vol`].
//!
//! Domain: spot (or forward), strike, expiry and volatility must be finite and > 0; rate and yield finite (negative
//! allowed). An expired option (`T = 0`) or a zero volatility has no Greeks (gamma is infinite at the strike), so both
//! are refused; the value there is the discounted intrinsic value `D·max(w·(F − K), 0)`.

use std::fmt;

use normal::{gaussian_factor, normal_cdf_given_gaussian, FRAC_1_SQRT_2PI};
pub use normal::{normal_cdf, normal_pdf};

mod normal;
#[cfg(test)]
mod tests;

/// The most relative uncertainty of an implied volatility that [`EuropeanOption::implied_vol`] accepts: the
/// relative change of volatility that one rounding unit (2^−52, relative) of the price corresponds to. Above it the
/// price does not determine the volatility (vega vanishes to within rounding) and the solve is refused.
pub const IMPLIED_VOL_RELATIVE_UNCERTAINTY_MAX: f64 = 1e-6;

/// Most iterations of the implied-volatility solve (bracket search included). Bisection alone halves the bracket
/// each step; from `[0, 64]` to a relative width of 2^−50 at a volatility of 1e−10 takes about 100 halvings.
pub const IMPLIED_VOL_ITERATIONS_MAX: u32 = 200;

/// The bracket of the implied-volatility solve in total standard deviation `σ√T` ends here: at `σ√T = 64` every
/// option is worth its upper bound to within rounding (`N(−32)` is about 1e−225), so a larger value cannot be
/// told apart.
pub const TOTAL_STD_DEV_MAX: f64 = 64.0;

/// Which formula prices the option; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Spot `S` with a continuous yield `q`: `F = S·e^((r−q)T)`.
    BlackScholes,
    /// The underlying is the forward `F` itself, discounted at `r`.
    Black76,
}

impl Model {
    /// The name used on the command line and in messages: `black-scholes` or `black-76`.
    pub fn name(self) -> &'static str {
        match self {
            Model::BlackScholes => "black-scholes",
            Model::Black76 => "black-76",
        }
    }
}

/// Call or put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Call,
    Put,
}

impl OptionKind {
    /// `call` or `put`.
    pub fn name(self) -> &'static str {
        match self {
            OptionKind::Call => "call",
            OptionKind::Put => "put",
        }
    }

    /// `+1` for a call, `−1` for a put.
    fn sign(self) -> f64 {
        match self {
            OptionKind::Call => 1.0,
            OptionKind::Put => -1.0,
        }
    }

    fn opposite(self) -> OptionKind {
        match self {
            OptionKind::Call => OptionKind::Put,
            OptionKind::Put => OptionKind::Call,
        }
    }
}

/// Everything that defines one European option and its market, apart from volatility. Checked by
/// [`EuropeanOption::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionInputs {
    pub model: Model,
    pub kind: OptionKind,
    /// The spot price `S` (Black-Scholes) or the forward price `F` for the option's expiry (Black-76). > 0.
    pub underlying: f64,
    /// `K`, in the underlying's price units. > 0.
    pub strike: f64,
    /// `r`: continuously compounded annual risk-free rate, e.g. 0.05. Any finite value.
    pub rate: f64,
    /// `q`: continuously compounded annual yield of the underlying (dividend, staking, foreign rate), e.g. 0.03.
    /// Any finite value for Black-Scholes; must be 0 for Black-76.
    pub dividend_yield: f64,
    /// `T`: time to expiry in years. > 0.
    pub expiry_years: f64,
}

/// Price and Greeks of one long option. Units in the module doc: delta and gamma per unit of the underlying, vega
/// per 1.00 of volatility, rho per 1.00 of rate, theta per year of calendar time passing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greeks {
    pub price: f64,
    pub delta: f64,
    pub gamma: f64,
    pub vega: f64,
    pub theta: f64,
    pub rho: f64,
}

/// Why an option could not be priced or its volatility implied. Every message names the quantity and the rule.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionError {
    /// An input broke its rule (`spot must be a finite number > 0, got -1`).
    Input {
        field: &'static str,
        value: f64,
        rule: &'static str,
    },
    /// The inputs are valid one by one but a result overflows `f64` (for example `e^(−rT)` with `rT = −800`).
    NotFinite { quantity: &'static str },
    /// Implied volatility: the price is at or below the no-arbitrage lower bound, where only a zero (or no)
    /// volatility fits.
    PriceNotAboveLowerBound {
        price: f64,
        bound: f64,
        rule: &'static str,
    },
    /// Implied volatility: the price is at or above the no-arbitrage upper bound, which no finite volatility
    /// reaches.
    PriceNotBelowUpperBound {
        price: f64,
        bound: f64,
        rule: &'static str,
    },
    /// Implied volatility: vega is zero to within rounding at this price (the price sits within rounding of a
    /// bound, or the option is so deep in the money that its time value is lost in the price's last digits), so the
    /// price does not determine the volatility.
    VegaVanishes {
        price: f64,
        vol_relative_uncertainty: f64,
    },
    /// Implied volatility: the solve did not converge within [`IMPLIED_VOL_ITERATIONS_MAX`] iterations. Not
    /// expected for any valid input; reported rather than returning an inaccurate value.
    NoConvergence { price: f64, iterations: u32 },
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Input { field, value, rule } => write!(f, "{field} {rule}, got {value}"),
            OptionError::NotFinite { quantity } => write!(
                f,
                "{quantity} is not a finite number for these inputs (f64 overflow); the inputs are out of range"
            ),
            OptionError::PriceNotAboveLowerBound { price, bound, rule } => write!(
                f,
                "price {price} is not above the lower bound {bound} ({rule}): no positive volatility fits"
            ),
            OptionError::PriceNotBelowUpperBound { price, bound, rule } => write!(
                f,
                "price {price} is not below the upper bound {bound} ({rule}): no volatility fits"
            ),
            OptionError::VegaVanishes {
                price,
                vol_relative_uncertainty,
            } => write!(
                f,
                "price {price} does not determine the volatility: vega is zero to within rounding there (one \
                 rounding unit of the price moves the volatility by {vol_relative_uncertainty:.1e} relative, more \
                 than {IMPLIED_VOL_RELATIVE_UNCERTAINTY_MAX:e}); the price is within rounding of a bound, or the \
                 option is so deep in the money that its time value is lost: quote the out-of-the-money option"
            ),
            OptionError::NoConvergence { price, iterations } => write!(
                f,
                "implied volatility for price {price} did not converge in {iterations} iterations"
            ),
        }
    }
}

impl std::error::Error for OptionError {}

/// A validated European option: the inputs of [`OptionInputs`] and what follows from them without the
/// volatility (discount factors, forward, log-moneyness), computed once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EuropeanOption {
    inputs: OptionInputs,
    /// `b`: cost of carry per year, `r − q` (Black-Scholes) or 0 (Black-76).
    carry_rate: f64,
    /// `D = e^(−rT)`.
    discount_factor: f64,
    /// `e^((b−r)T)`: `e^(−qT)` (Black-Scholes) or `e^(−rT)` (Black-76); delta of a deep in-the-money call.
    carry_discount_factor: f64,
    /// `F = S·e^((r−q)T)` (Black-Scholes) or the given forward (Black-76).
    forward: f64,
    /// `ln(F/K)`, computed as `ln(U/K) + b·T` so that no rounding of `F` enters.
    log_moneyness: f64,
    /// `√T`.
    sqrt_expiry: f64,
    /// `e^(−|ln(F/K)|) = min(F, K)/max(F, K)`, in (0, 1]: the ratio of `e^(−d1²/2)` and `e^(−d2²/2)` (the smaller
    /// over the larger), which lets one `exp` serve both (module doc).
    moneyness_decay: f64,
    /// The no-arbitrage bounds of the price (discounted), see [`EuropeanOption::price_bounds`]. Rounding in the
    /// pricing formulas (a difference of two legs that nearly cancel) never takes a price outside them: prices are
    /// clamped to `[lower_bound, upper_bound]`.
    lower_bound: f64,
    upper_bound: f64,
}

/// What [`EuropeanOption::price`] and [`EuropeanOption::greeks`] share; see [`EuropeanOption::legs`].
struct Legs {
    /// `N(w·d1)`.
    cdf_d1: f64,
    /// `e^(−d1²/2)`.
    gaussian_d1: f64,
    /// `U·e^((b−r)T)·N(w·d1)`.
    underlying_leg: f64,
    /// `K·e^(−rT)·N(w·d2)`.
    strike_leg: f64,
    /// `w·(underlying_leg − strike_leg)`, clamped to the no-arbitrage bounds.
    price: f64,
}

fn check_positive(field: &'static str, value: f64) -> Result<(), OptionError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OptionError::Input {
            field,
            value,
            rule: "must be a finite number > 0",
        })
    }
}

fn check_finite(field: &'static str, value: f64) -> Result<(), OptionError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(OptionError::Input {
            field,
            value,
            rule: "must be a finite number",
        })
    }
}

fn finite(quantity: &'static str, value: f64) -> Result<f64, OptionError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(OptionError::NotFinite { quantity })
    }
}

impl EuropeanOption {
    /// Checks every input (finite; underlying, strike and expiry > 0; `dividend_yield` 0 for Black-76) and computes
    /// the discount factors and the forward; an input that makes one of them overflow is an error too.
    pub fn new(inputs: OptionInputs) -> Result<EuropeanOption, OptionError> {
        let underlying_name = match inputs.model {
            Model::BlackScholes => "spot",
            Model::Black76 => "forward",
        };
        check_positive(underlying_name, inputs.underlying)?;
        check_positive("strike", inputs.strike)?;
        check_finite("rate", inputs.rate)?;
        check_finite("dividend_yield", inputs.dividend_yield)?;
        check_positive("expiry_years", inputs.expiry_years)?;
        let carry_rate = match inputs.model {
            Model::BlackScholes => inputs.rate - inputs.dividend_yield,
            Model::Black76 => {
                if inputs.dividend_yield != 0.0 {
                    return Err(OptionError::Input {
                        field: "dividend_yield",
                        value: inputs.dividend_yield,
                        rule: "must be 0 for black-76 (the forward already carries the underlying's yield)",
                    });
                }
                0.0
            }
        };
        let t = inputs.expiry_years;
        let discount_factor = finite("the discount factor e^(-rT)", (-inputs.rate * t).exp())?;
        // Black-76: e^((b−r)T) = e^(−rT) and F = U, no exp needed.
        let carry_discount_factor = match inputs.model {
            Model::BlackScholes => finite(
                "the yield discount factor e^(-qT)",
                ((carry_rate - inputs.rate) * t).exp(),
            )?,
            Model::Black76 => discount_factor,
        };
        let log_moneyness = finite(
            "ln(F/K)",
            (inputs.underlying / inputs.strike).ln() + carry_rate * t,
        )?;
        let growth_factor = match inputs.model {
            // e^((r−q)T) = e^(−qT)/e^(−rT): one exp fewer, within 1.5 rounding units instead of 0.5; by exp where
            // a factor is subnormal (the quotient would lose digits).
            Model::BlackScholes
                if discount_factor >= f64::MIN_POSITIVE
                    && carry_discount_factor >= f64::MIN_POSITIVE =>
            {
                carry_discount_factor / discount_factor
            }
            Model::BlackScholes => (carry_rate * t).exp(),
            Model::Black76 => 1.0,
        };
        let forward = finite("the forward F", inputs.underlying * growth_factor)?;
        if discount_factor == 0.0 || carry_discount_factor == 0.0 || forward == 0.0 {
            return Err(OptionError::NotFinite {
                quantity: "a discount factor or the forward (underflows to 0)",
            });
        }
        // U·e^((b−r)T) (= S·e^(−qT), or F·e^(−rT)) and K·e^(−rT): the legs of the price at N = 1.
        let underlying_discounted = finite(
            "the discounted underlying",
            inputs.underlying * carry_discount_factor,
        )?;
        let strike_discounted = finite("the discounted strike", inputs.strike * discount_factor)?;
        // F/K = S·e^(−qT)/(K·e^(−rT)) (Black-76: F·e^(−rT)/(K·e^(−rT))); 0 only if it underflows, and then
        // e^(−|ln(F/K)|) does too.
        let moneyness_decay = if underlying_discounted <= strike_discounted {
            underlying_discounted / strike_discounted
        } else {
            strike_discounted / underlying_discounted
        };
        let (lower_bound, upper_bound) = match inputs.kind {
            OptionKind::Call => (
                (underlying_discounted - strike_discounted).max(0.0),
                underlying_discounted,
            ),
            OptionKind::Put => (
                (strike_discounted - underlying_discounted).max(0.0),
                strike_discounted,
            ),
        };
        Ok(EuropeanOption {
            inputs,
            carry_rate,
            discount_factor,
            carry_discount_factor,
            forward,
            log_moneyness,
            sqrt_expiry: t.sqrt(),
            moneyness_decay,
            lower_bound,
            upper_bound,
        })
    }

    /// The inputs this option was built from.
    pub fn inputs(&self) -> &OptionInputs {
        &self.inputs
    }

    /// `F`: the forward for the option's expiry.
    pub fn forward(&self) -> f64 {
        self.forward
    }

    /// `D = e^(−rT)`.
    pub fn discount_factor(&self) -> f64 {
        self.discount_factor
    }

    /// `σ√T`, or an error if `vol` is not a finite number > 0 or the product underflows to 0.
    fn total_std_dev(&self, vol: f64) -> Result<f64, OptionError> {
        check_positive("vol", vol)?;
        let total_std_dev = vol * self.sqrt_expiry;
        if total_std_dev > 0.0 {
            Ok(total_std_dev)
        } else {
            Err(OptionError::Input {
                field: "vol",
                value: vol,
                rule: "must be large enough that vol·√expiry_years does not underflow to 0",
            })
        }
    }

    /// The price at volatility `vol` (annual, > 0).
    pub fn price(&self, vol: f64) -> Result<f64, OptionError> {
        let total_std_dev = self.total_std_dev(vol)?;
        let legs = self.legs(total_std_dev);
        finite("the price", legs.price)
    }

    /// `d1`, `N(w·d1)`, `N(w·d2)`, `e^(−d1²/2)` and the price at total standard deviation `s = σ√T > 0`: what
    /// [`price`](Self::price) and [`greeks`](Self::greeks) share (so both give the same price to the bit). One
    /// `exp` for the three normal functions (module doc).
    #[inline(always)]
    fn legs(&self, total_std_dev: f64) -> Legs {
        let w = self.inputs.kind.sign();
        let x = self.log_moneyness;
        let d1 = x / total_std_dev + 0.5 * total_std_dev;
        let d2 = d1 - total_std_dev;
        // d1² − d2² = 2x: for x >= 0, |d2| <= |d1| and e^(−d1²/2) = e^(−d2²/2)·e^(−x); for x < 0 the other way.
        let (gaussian_d1, gaussian_d2) = if x >= 0.0 {
            let gaussian_d2 = gaussian_factor(d2);
            (gaussian_d2 * self.moneyness_decay, gaussian_d2)
        } else {
            let gaussian_d1 = gaussian_factor(d1);
            (gaussian_d1, gaussian_d1 * self.moneyness_decay)
        };
        let cdf_d1 = normal_cdf_given_gaussian(w * d1, gaussian_d1);
        let cdf_d2 = normal_cdf_given_gaussian(w * d2, gaussian_d2);
        // U·e^((b−r)T)·N(w·d1) and K·e^(−rT)·N(w·d2): the two legs of the price, each >= 0.
        let underlying_leg = self.inputs.underlying * self.carry_discount_factor * cdf_d1;
        let strike_leg = self.inputs.strike * self.discount_factor * cdf_d2;
        Legs {
            cdf_d1,
            gaussian_d1,
            underlying_leg,
            strike_leg,
            price: self.clamp_to_bounds(w * (underlying_leg - strike_leg)),
        }
    }

    /// Price and all Greeks at volatility `vol` (annual, > 0). Formulas and units in the module doc.
    pub fn greeks(&self, vol: f64) -> Result<Greeks, OptionError> {
        let total_std_dev = self.total_std_dev(vol)?;
        let OptionInputs {
            model,
            kind,
            underlying,
            rate,
            expiry_years,
            ..
        } = self.inputs;
        let w = kind.sign();
        let Legs {
            cdf_d1,
            gaussian_d1,
            underlying_leg,
            strike_leg,
            price,
        } = self.legs(total_std_dev);
        let density_d1 = FRAC_1_SQRT_2PI * gaussian_d1;
        let delta = w * self.carry_discount_factor * cdf_d1;
        let gamma = self.carry_discount_factor * density_d1 / (underlying * total_std_dev);
        let vega = underlying * self.carry_discount_factor * density_d1 * self.sqrt_expiry;
        let theta = -vega * vol / (2.0 * expiry_years)
            - w * (self.carry_rate - rate) * underlying_leg
            - w * rate * strike_leg;
        let rho = match model {
            Model::BlackScholes => w * expiry_years * strike_leg,
            Model::Black76 => -expiry_years * price,
        };
        Ok(Greeks {
            price: finite("the price", price)?,
            delta: finite("delta", delta)?,
            gamma: finite("gamma", gamma)?,
            vega: finite("vega", vega)?,
            theta: finite("theta", theta)?,
            rho: finite("rho", rho)?,
        })
    }

    /// The discounted lower and upper no-arbitrage bounds of the price, and the rule of each in words.
    ///
    /// Lower: `D·max(w·(F − K), 0)`. Upper: `D·F` for a call (`S·e^(−qT)` under Black-Scholes), `D·K` for a put.
    /// Every price strictly between them has exactly one volatility; the price tends to the lower bound as
    /// `σ√T → 0` and to the upper bound as `σ√T → ∞`.
    pub fn price_bounds(&self) -> (f64, &'static str, f64, &'static str) {
        let (lower_rule, upper_rule) = match (self.inputs.model, self.inputs.kind) {
            (Model::BlackScholes, OptionKind::Call) => (
                "max(S·e^(-qT) - K·e^(-rT), 0)",
                "S·e^(-qT), the call's value at infinite volatility",
            ),
            (Model::BlackScholes, OptionKind::Put) => (
                "max(K·e^(-rT) - S·e^(-qT), 0)",
                "K·e^(-rT), the put's value at infinite volatility",
            ),
            (Model::Black76, OptionKind::Call) => (
                "e^(-rT)·max(F - K, 0)",
                "F·e^(-rT), the call's value at infinite volatility",
            ),
            (Model::Black76, OptionKind::Put) => (
                "e^(-rT)·max(K - F, 0)",
                "K·e^(-rT), the put's value at infinite volatility",
            ),
        };
        (self.lower_bound, lower_rule, self.upper_bound, upper_rule)
    }

    fn clamp_to_bounds(&self, price: f64) -> f64 {
        price.max(self.lower_bound).min(self.upper_bound)
    }

    /// The annual volatility `σ > 0` at which [`price`](Self::price) equals `price`, or an error saying why none
    /// fits.
    ///
    /// Method. The price is strictly increasing in the total standard deviation `s = σ√T`, from the lower bound
    /// (`s → 0`) to the upper bound (`s → ∞`) of [`price_bounds`](Self::price_bounds); a price outside the open
    /// interval is refused. The solve works on the undiscounted out-of-the-money option: an in-the-money price
    /// less its intrinsic value is, by put-call parity, the price of the opposite out-of-the-money option. It
    /// finds the root of `f(s) = ln b(s) − ln target`, where `b` is the undiscounted Black price; in logs the
    /// deep out-of-the-money branch (prices like `e^(−x²/2s²)`) is close to linear in `1/s²` instead of flat,
    /// so Newton steps stay useful. A bracket `[lo, hi]` starts at `[0, 1]` and doubles `hi` up to
    /// [`TOTAL_STD_DEV_MAX`]; Newton starts at the inflection point `s = √(2|ln(F/K)|)` (at the money: the
    /// Brenner-Subrahmanyam estimate `s = √(2π)·target/F`) and every step that would leave the bracket or not
    /// halve the error is replaced by bisection (Numerical Recipes' `rtsafe`), so the solve always converges; it
    /// stops when a step changes `s` by less than `2^−50` relative: 6 to 25 evaluations for most prices, at most 73 in
    /// the tests (the slow ones are deep out of the money, where the first steps are bisections).
    ///
    /// Failure modes, each an error rather than a wrong number: a price at or below the lower bound (no positive
    /// volatility), at or above the upper bound (no finite volatility), and a price where vega vanishes to within
    /// rounding, so that one unit of rounding in the price moves the volatility by more than
    /// [`IMPLIED_VOL_RELATIVE_UNCERTAINTY_MAX`] relative: within rounding of the upper bound, or an in-the-money
    /// price whose time value is lost in its last digits (quote the out-of-the-money option instead).
    pub fn implied_vol(&self, price: f64) -> Result<f64, OptionError> {
        if !price.is_finite() || price < 0.0 {
            return Err(OptionError::Input {
                field: "price",
                value: price,
                rule: "must be a finite number >= 0",
            });
        }
        let (lower, lower_rule, upper, upper_rule) = self.price_bounds();
        let not_above_lower = OptionError::PriceNotAboveLowerBound {
            price,
            bound: lower,
            rule: lower_rule,
        };
        if price >= upper {
            return Err(OptionError::PriceNotBelowUpperBound {
                price,
                bound: upper,
                rule: upper_rule,
            });
        }
        if price <= lower {
            return Err(not_above_lower);
        }
        let kind = self.inputs.kind;
        let (f, k) = (self.forward, self.inputs.strike);
        let x = self.log_moneyness;
        // Undiscounted: price / D. Then the out-of-the-money option and its price (the time value).
        let undiscounted = price / self.discount_factor;
        let in_the_money = kind.sign() * x > 0.0;
        let (otm_kind, target) = if in_the_money {
            let intrinsic = kind.sign() * (f - k);
            (kind.opposite(), undiscounted - intrinsic)
        } else {
            (kind, undiscounted)
        };
        if target <= 0.0 {
            // Below the bound only through the rounding of price / D.
            return Err(not_above_lower);
        }
        let ln_target = target.ln();
        let w = otm_kind.sign();
        // f(s) = ln b(s) − ln target and f'(s) = (∂b/∂s)/b, with ∂b/∂s = F·n(d1) for calls and puts alike.
        let objective = |s: f64| -> (f64, f64) {
            let d1 = x / s + 0.5 * s;
            let d2 = d1 - s;
            let b = w * (f * normal_cdf(w * d1) - k * normal_cdf(w * d2));
            if b > 0.0 {
                (b.ln() - ln_target, f * normal_pdf(d1) / b)
            } else {
                // The true b is > 0 but below the rounding of its two legs (or it underflows): far below any
                // target the solve can resolve, so the root lies to the right.
                (f64::NEG_INFINITY, f64::NAN)
            }
        };
        let mut iterations = 0u32;
        // Bracket: f(lo) < 0 <= f(hi), with f(0) = −∞.
        let mut lo = 0.0f64;
        let mut hi = 1.0f64;
        loop {
            iterations += 1;
            let (value, _) = objective(hi);
            if value >= 0.0 {
                break;
            }
            lo = hi;
            hi *= 2.0;
            if hi > TOTAL_STD_DEV_MAX {
                // Even σ√T = 64 prices below the target, which is then within rounding of the upper bound.
                return Err(OptionError::VegaVanishes {
                    price,
                    vol_relative_uncertainty: f64::INFINITY,
                });
            }
        }
        let initial = if x == 0.0 {
            (2.0 * std::f64::consts::PI).sqrt() * target / f
        } else {
            (2.0 * x.abs()).sqrt()
        };
        let mut s = if initial > lo && initial < hi {
            initial
        } else {
            0.5 * (lo + hi)
        };
        let (mut value, mut slope) = objective(s);
        let mut step_before_last = hi - lo;
        let mut step = step_before_last;
        let mut converged = value == 0.0;
        while !converged {
            iterations += 1;
            if iterations > IMPLIED_VOL_ITERATIONS_MAX {
                return Err(OptionError::NoConvergence {
                    price,
                    iterations: IMPLIED_VOL_ITERATIONS_MAX,
                });
            }
            if value < 0.0 {
                lo = lo.max(s);
            } else {
                hi = hi.min(s);
            }
            let newton = s - value / slope;
            let newton_usable = value.is_finite()
                && slope.is_finite()
                && slope > 0.0
                && newton > lo
                && newton < hi
                && (2.0 * value).abs() <= (step_before_last * slope).abs();
            step_before_last = step;
            let next = if newton_usable {
                newton
            } else {
                0.5 * (lo + hi)
            };
            step = next - s;
            s = next;
            (value, slope) = objective(s);
            converged = value == 0.0
                || step.abs() <= s * f64::EPSILON * 4.0
                || hi - lo <= hi * f64::EPSILON * 4.0;
        }
        // Conditioning. The price formula (and, in the money, the intrinsic value F − K taken off the price) is a
        // difference of two legs, F·N(w·d1) and K·N(w·d2) undiscounted, so its rounding is about ε times their sum;
        // that moves s by ε·legs/(∂b/∂s), relative ε·legs/(s·∂b/∂s).
        let d1 = x / s + 0.5 * s;
        let w_given = kind.sign();
        let legs = f * normal_cdf(w_given * d1) + k * normal_cdf(w_given * (d1 - s));
        let vol_relative_uncertainty =
            f64::EPSILON * legs.max(undiscounted) / (s * f * normal_pdf(d1));
        if vol_relative_uncertainty.is_nan()
            || vol_relative_uncertainty > IMPLIED_VOL_RELATIVE_UNCERTAINTY_MAX
        {
            return Err(OptionError::VegaVanishes {
                price,
                vol_relative_uncertainty,
            });
        }
        if value.is_nan() || value.abs() > 1e-9 {
            return Err(OptionError::NoConvergence { price, iterations });
        }
        let vol = s / self.sqrt_expiry;
        if vol.is_finite() && vol > 0.0 {
            Ok(vol)
        } else {
            Err(OptionError::NotFinite {
                quantity: "the implied volatility",
            })
        }
    }
}
