//! Amounts in base units: 1 TIME = 100,000,000 units. Decimal TIME strings are parsed and
//! printed exactly, without floating point.

/// An amount in base units.
pub type Amount = u64;

/// Base units in one TIME.
pub const COIN: Amount = 100_000_000;

/// Why a decimal TIME string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain decimal number.
    #[error("'{0}' is not a decimal amount of TIME such as 12.5")]
    Format(String),
    /// More than eight decimal places.
    #[error("'{0}' has more than 8 decimal places")]
    Precision(String),
    /// Too large for 64 bits of base units.
    #[error("'{0}' is too large")]
    Overflow(String),
}

/// Parses a decimal TIME amount such as `12.5` into base units.
pub fn parse_amount(text: &str) -> Result<Amount, AmountError> {
    let s = text.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(AmountError::Format(text.into()));
    }
    if frac.len() > 8 {
        return Err(AmountError::Precision(text.into()));
    }
    let overflow = || AmountError::Overflow(text.into());
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    let frac_units: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<8}").parse().map_err(|_| overflow())?
    };
    whole
        .checked_mul(COIN)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(overflow)
}

/// Prints base units as decimal TIME, without trailing zeros (`12.5`, `100`).
pub fn format_amount(units: Amount) -> String {
    let whole = units / COIN;
    let frac = units % COIN;
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:08}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_decimal_time() {
        assert_eq!(parse_amount("12.5"), Ok(1_250_000_000));
        assert_eq!(parse_amount("0.00000001"), Ok(1));
        assert_eq!(parse_amount("1000"), Ok(1000 * COIN));
        assert_eq!(parse_amount(".5"), Ok(COIN / 2));
        assert!(matches!(
            parse_amount("1.000000001"),
            Err(AmountError::Precision(_))
        ));
        assert!(matches!(parse_amount("-1"), Err(AmountError::Format(_))));
        assert!(matches!(parse_amount("1e3"), Err(AmountError::Format(_))));
        assert!(matches!(parse_amount(""), Err(AmountError::Format(_))));
        assert!(matches!(parse_amount("."), Err(AmountError::Format(_))));
        assert!(matches!(
            parse_amount("999999999999"),
            Err(AmountError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(units in any::<u64>()) {
            prop_assert_eq!(parse_amount(&format_amount(units)), Ok(units));
        }
    }
}
