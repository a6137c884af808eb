//! Byte quantities with explicit units: `"11.0GB"` (decimal, 1e9) and `"10.5GiB"` (binary, 2^30).

use std::fmt;
use std::str::FromStr;

/// A number of bytes parsed from text that names its unit.
///
/// Decimal units are powers of 1000 (`kB`, `MB`, `GB`, `TB`), binary units powers of 1024
/// (`KiB`, `MiB`, `GiB`, `TiB`); `B` is bytes. Units are matched without regard to case, so
/// `gb` is a GB and `gib` a GiB. A fraction is exact up to the byte and rounds half up below it
/// (`0.1GiB` is 107,374,182 bytes). A bare number is refused: the unit must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a byte size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseByteSizeError {
    /// Nothing was given.
    #[error("empty byte size: write a number and a unit such as \"11.0GB\" or \"512MiB\"")]
    Empty,
    /// A number without a unit.
    #[error(
        "`{input}` has no unit: write it with one, such as \"{input}B\", \"{input}GB\" or \"{input}GiB\""
    )]
    MissingUnit {
        /// The text as given.
        input: String,
    },
    /// A unit this parser does not know.
    #[error("`{input}` has an unknown unit `{unit}`: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB")]
    UnknownUnit {
        /// The text as given.
        input: String,
        /// The unit as given.
        unit: String,
    },
    /// The number part is not a plain non-negative decimal.
    #[error(
        "`{input}` is not a non-negative decimal number followed by a unit, such as \"11.0GB\""
    )]
    BadNumber {
        /// The text as given.
        input: String,
    },
    /// The value does not fit in 64 bits of bytes.
    #[error("`{input}` is more bytes than fit in 64 bits")]
    Overflow {
        /// The text as given.
        input: String,
    },
}

const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ParseByteSizeError::Empty);
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim();
        let bad_number = || ParseByteSizeError::BadNumber {
            input: input.to_owned(),
        };
        if number.is_empty() {
            return Err(bad_number());
        }
        if unit.is_empty() {
            return Err(ParseByteSizeError::MissingUnit {
                input: text.to_owned(),
            });
        }
        let multiplier = UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)
            .ok_or_else(|| ParseByteSizeError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            })?;
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if (whole.is_empty() && fraction.is_empty())
            || fraction.contains('.')
            || fraction.len() > 18
        {
            return Err(bad_number());
        }
        let overflow = || ParseByteSizeError::Overflow {
            input: input.to_owned(),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| bad_number())?
        };
        let numerator = whole
            .checked_mul(scale)
            .and_then(|v| v.checked_add(fraction))
            .and_then(|v| v.checked_mul(u128::from(multiplier)))
            .ok_or_else(overflow)?;
        let bytes = (numerator + scale / 2) / scale;
        u64::try_from(bytes).map(ByteSize).map_err(|_| overflow())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Bytes(self.0), f)
    }
}

/// Shows a byte count in decimal units with two decimals (`11.65 GB`), the units the seed
/// figures use; counts below 1 kB show as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let (div, unit) = match b {
            0..1_000 => return write!(f, "{b} B"),
            1_000..1_000_000 => (1e3, "kB"),
            1_000_000..1_000_000_000 => (1e6, "MB"),
            1_000_000_000..1_000_000_000_000 => (1e9, "GB"),
            _ => (1e12, "TB"),
        };
        write!(f, "{:.2} {unit}", b as f64 / div)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = input.parse::<ByteSize>().map(|b| b.0);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "parsing {input:?}"),
            (Err(err), Err(fragment)) => {
                let message = err.to_string();
                assert!(
                    message.contains(fragment),
                    "{input:?}: {message:?} lacks {fragment:?}"
                );
            }
            (got, want) => panic!("parsing {input:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn parses_units_exactly() {
        check("11.0GB", Ok(11_000_000_000));
        check("11.5GB", Ok(11_500_000_000));
        check("10.5GiB", Ok(10 * (1 << 30) + (1 << 29)));
        check("12GiB", Ok(12_884_901_888));
        check("512 MiB", Ok(512 << 20));
        check("1024B", Ok(1024));
        check(" 0.3gb ", Ok(300_000_000));
        check(".5kB", Ok(500));
        check("0.1GiB", Ok(107_374_182));
        check("0B", Ok(0));
        check("16TiB", Ok(16 << 40));
    }

    #[test]
    fn refuses_bad_text_with_what_to_write() {
        check("", Err("write a number and a unit"));
        check("1024", Err("has no unit"));
        check("11.0 gigs", Err("unknown unit `gigs`"));
        check("-1GB", Err("non-negative decimal"));
        check("1.2.3GB", Err("non-negative decimal"));
        check(".GB", Err("non-negative decimal"));
        check("GB", Err("non-negative decimal"));
        check("99999999999999999999TB", Err("64 bits"));
        check("20000000TiB", Err("64 bits"));
    }

    #[test]
    fn displays_decimal_units() {
        assert_eq!(Bytes(999).to_string(), "999 B");
        assert_eq!(Bytes(11_650_000_000).to_string(), "11.65 GB");
        assert_eq!(Bytes(786_432).to_string(), "786.43 kB");
        assert_eq!(ByteSize(4_320_000).to_string(), "4.32 MB");
    }
}
