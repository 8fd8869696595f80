//! A size in bytes as written in configuration: a whole number followed by `B`, `KiB`,
//! `MiB` or `GiB` (`"32MiB"`, `"512KiB"`). Binary units only, so that `MiB` never means
//! two different things in two places.

use std::fmt;
use std::str::FromStr;

/// A number of bytes, as written in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Why a text is not a size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a size: expected a whole number followed by B, KiB, MiB or GiB \
     (\"512KiB\", \"32MiB\")"
)]
pub struct ByteSizeError(pub String);

/// The units with their size in bytes, largest first so that `Display` picks the largest
/// exact one.
const UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> ByteSize {
        ByteSize(bytes)
    }

    /// A size of `mib` mebibytes.
    pub const fn from_mib(mib: u64) -> ByteSize {
        ByteSize(mib << 20)
    }

    /// The size in bytes.
    pub const fn as_bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<ByteSize, ByteSizeError> {
        let bad = || ByteSizeError(text.to_owned());
        let trimmed = text.trim();
        let digits = trimmed.len()
            - trimmed
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let (number, unit) = trimmed.split_at(digits);
        if number.is_empty() {
            return Err(bad());
        }
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        let (_, scale) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(bad)?;
        number.checked_mul(*scale).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, scale) = UNITS
            .iter()
            .find(|(_, scale)| self.0 != 0 && self.0.is_multiple_of(*scale))
            .unwrap_or(&("B", 1));
        write!(f, "{}{name}", self.0 / scale)
    }
}

/// Reads a whole file, refusing one larger than `limit` without reading past it: a
/// configuration pointed at `/dev/zero` or a multi-gigabyte file must fail, not fill memory.
pub fn read_file_bounded(path: &std::path::Path, limit: ByteSize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "exactly at the limit" from "over it".
    std::fs::File::open(path)?
        .take(limit.as_bytes().saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit.as_bytes() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {limit}, the most this file may hold"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_binary_units_and_print_the_largest_exact_one() {
        for (text, bytes) in [
            ("0B", 0),
            ("17B", 17),
            ("512KiB", 512 << 10),
            ("32MiB", 32 << 20),
            ("32 MiB", 32 << 20),
            ("2GiB", 2 << 30),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        assert_eq!(ByteSize::from_mib(32).to_string(), "32MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(2048).to_string(), "2KiB");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn a_size_without_a_known_unit_or_too_large_is_refused() {
        for text in [
            "",
            "MiB",
            "32",
            "32MB",
            "32mib",
            "-1B",
            "1.5MiB",
            "99999999999999GiB",
        ] {
            assert!(text.parse::<ByteSize>().is_err(), "{text}");
        }
    }

    #[test]
    fn a_file_over_its_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [b'x'; 1024]).unwrap();
        assert_eq!(
            read_file_bounded(&path, ByteSize::from_bytes(1024))
                .unwrap()
                .len(),
            1024
        );
        let err = read_file_bounded(&path, ByteSize::from_bytes(1023)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("larger than 1023B"), "{err}");
    }

    #[test]
    fn an_endless_file_stops_at_the_limit() {
        let err = read_file_bounded(std::path::Path::new("/dev/zero"), ByteSize::from_mib(1))
            .unwrap_err();
        assert!(err.to_string().contains("larger than 1MiB"), "{err}");
    }
}
