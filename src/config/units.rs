//! Value types written as strings in the config file: durations (`"10s"`), sizes (`"50MiB"`),
//! rates (`"5/min"`) and CIDRs (`"10.0.0.0/8"`, or a bare address).
//!
//! Each type parses with [`FromStr`] (the error says what was expected) and deserializes through
//! it, so toml attaches the span of the offending value to the error and the user sees the line.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration written as numbers with units, as nginx takes them: `"10s"`, `"500ms"`, `"1.5s"`,
/// `"1m30s"`, `"1 min"`. Units: `ms`, `s`, `m`, `h`, `d`, `w` (also `us`, `ns` and long forms:
/// `sec`, `min`, `hours`, `days`…).
///
/// A bare number is refused: `timeout = "30"` could mean seconds or milliseconds, and guessing
/// wrong on a timeout is a production incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// A byte size written as `"<integer><unit>"`.
///
/// `B`; binary `KiB` `MiB` `GiB` `TiB`; decimal `KB`/`kB` `MB` `GB` `TB` (powers of 1000); and the
/// nginx spellings `k`/`K`, `m`/`M`, `g`/`G`, which nginx reads as powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// A rate limit written as `"<count>/<period>"`: `"10/s"`, `"5/min"`, `"100/hour"`, `"1000/day"`,
/// or any duration as the period (`"100/15m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests allowed per `per`; never 0.
    pub count: u32,
    /// The period the count refers to; never 0.
    pub per: std::time::Duration,
}

/// A network in CIDR notation; a bare address is read as a single host (`/32` or `/128`).
///
/// Host bits below the prefix are refused (`"10.0.0.1/8"`): the writer probably meant either
/// the host or the network, and an access rule should not have to guess which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

const DURATION_EXPECTED: &str = "a duration like \"10s\", \"500ms\", \"1.5s\", \"1m30s\"";
const SIZE_EXPECTED: &str = "a size like \"50MiB\", \"16KiB\", \"512B\"";
const RATE_EXPECTED: &str = "a rate like \"10/s\", \"5/min\", \"100/hour\"";
const CIDR_EXPECTED: &str = "a CIDR like \"10.0.0.0/8\" or an IP address";

/// Splits `"500ms"` into `("500", "ms")`, trimming the whole and the gap between the two.
fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

/// The unit spellings accepted, as the error message lists them.
const DURATION_UNITS: &str =
    "ms, s, m, h, d, w (or us, ns, and long forms such as sec, min, hours, days)";

impl FromStr for Duration {
    type Err = String;

    /// Parsed by `humantime` (integers and fractions, components added up: `"1m30s"`,
    /// `"1.5s"`, `"1 min"`), with three refusals of its own: a bare number (`"30"` is seconds or
    /// milliseconds?), a negative one, and months or years (`"1M"` is a month in humantime and
    /// nginx, a mebibyte in a size: a timeout has no use for either).
    fn from_str(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        if trimmed.starts_with('-') {
            return Err(format!(
                "expected {DURATION_EXPECTED}; a duration cannot be negative"
            ));
        }
        if trimmed.bytes().any(|b| b.is_ascii_digit())
            && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(format!(
                "expected {DURATION_EXPECTED}; {s:?} has no unit (write \"{trimmed}s\" or \"{trimmed}ms\")"
            ));
        }
        for unit in trimmed
            .split(|c: char| !c.is_alphabetic())
            .filter(|unit| !unit.is_empty())
        {
            if matches!(
                unit,
                "M" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years"
            ) {
                return Err(format!(
                    "expected {DURATION_EXPECTED}; months and years are not accepted ({unit:?}); use d or w"
                ));
            }
        }
        humantime::parse_duration(trimmed)
            .map(Duration)
            .map_err(|err| match err {
                humantime::DurationError::UnknownUnit { unit, .. } if !unit.is_empty() => {
                    format!("expected {DURATION_EXPECTED}; unknown unit {unit:?} (use {DURATION_UNITS})")
                }
                humantime::DurationError::NumberOverflow => {
                    format!("duration {s:?} is too large, or finer than a nanosecond")
                }
                _ => format!("expected {DURATION_EXPECTED}, found {s:?}"),
            })
    }
}

impl fmt::Display for Duration {
    /// The shortest exact spelling, so messages show values the way the user writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{d:?}");
        }
        if d.subsec_millis() != 0 || d.is_zero() {
            return match d.as_millis() {
                0 => f.write_str("0s"),
                ms => write!(f, "{ms}ms"),
            };
        }
        let secs = d.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (digits, unit) = split_number(s);
        if s.trim_start().starts_with('-') {
            return Err(format!(
                "expected {SIZE_EXPECTED}; a size cannot be negative"
            ));
        }
        if digits.is_empty() {
            return Err(format!("expected {SIZE_EXPECTED}, found {s:?}"));
        }
        if unit.is_empty() {
            return Err(format!(
                "expected {SIZE_EXPECTED}; {s:?} has no unit (write \"{digits}B\" for bytes)"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("size {s:?} is too large"))?;
        let multiplier: u64 = match unit {
            "B" => 1,
            "KiB" | "k" | "K" => 1 << 10,
            "MiB" | "m" | "M" => 1 << 20,
            "GiB" | "g" | "G" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "expected {SIZE_EXPECTED}; unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
        };
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n != 0 && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl Rate {
    /// The GCRA emission interval: one request is let through every `period`.
    ///
    /// Never zero: parsing refuses rates so high that the interval would round to 0 ns.
    pub fn period(&self) -> std::time::Duration {
        // count is never 0 for a parsed Rate; max(1) keeps a hand-built one from panicking.
        self.per / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((count, period)) = s.split_once('/') else {
            return Err(format!("expected {RATE_EXPECTED}, found {s:?}"));
        };
        let (count, period) = (count.trim(), period.trim());
        if count.starts_with('-') {
            return Err(format!(
                "expected {RATE_EXPECTED}; a rate cannot be negative"
            ));
        }
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "expected {RATE_EXPECTED}; {count:?} is not a request count"
            ));
        }
        let count: u32 = count
            .parse()
            .map_err(|_| format!("rate {s:?}: the count is too large"))?;
        if count == 0 {
            return Err("a rate of 0 lets nothing through; remove the limit instead".to_owned());
        }
        let per = match period {
            "s" | "sec" | "second" => std::time::Duration::from_secs(1),
            "m" | "min" | "minute" => std::time::Duration::from_secs(60),
            "h" | "hour" => std::time::Duration::from_secs(3600),
            "d" | "day" => std::time::Duration::from_secs(86_400),
            // "100/15m": any duration works as the period.
            other => other
                .parse::<Duration>()
                .map_err(|_| {
                    format!(
                        "expected {RATE_EXPECTED}; unknown period {other:?} (use second, minute, hour, day or a duration)"
                    )
                })?
                .0,
        };
        if per.is_zero() {
            return Err(format!("rate {s:?}: the period cannot be 0"));
        }
        let rate = Rate { count, per };
        if rate.period().is_zero() {
            return Err(format!("rate {s:?} is too high to enforce"));
        }
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            _ if self.per.subsec_nanos() != 0 => None,
            1 => Some("s"),
            60 => Some("min"),
            3600 => Some("hour"),
            86_400 => Some("day"),
            _ => None,
        };
        match unit {
            Some(unit) => write!(f, "{}/{unit}", self.count),
            None => write!(f, "{}/{}", self.count, Duration(self.per)),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(addr)));
        }
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("expected {CIDR_EXPECTED}, found {s:?}"))?;
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has bits set after the /{} prefix: write \"{}\" for the network or \"{}\" for the host",
                net.prefix_len(),
                net.trunc(),
                net.addr()
            ));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Cidr> for IpNet {
    fn from(c: Cidr) -> IpNet {
        c.0
    }
}

/// Deserializes any of the types above from a string through its `FromStr`.
///
/// A visitor rather than `String::deserialize` so that a TOML integer (`max_body = 1024`) gets
/// "expected a size like …" instead of the unhelpful "expected a string".
struct ParseVisitor<T>(&'static str, PhantomData<T>);

impl<T: FromStr<Err = String>> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! deserialize_from_str {
    ($($ty:ty => $expected:expr),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(ParseVisitor($expected, PhantomData))
            }
        }
    )*};
}

deserialize_from_str! {
    Duration => DURATION_EXPECTED,
    ByteSize => SIZE_EXPECTED,
    Rate => RATE_EXPECTED,
    Cidr => CIDR_EXPECTED,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    fn dur(s: &str) -> Result<Std, String> {
        s.parse::<Duration>().map(|d| d.0)
    }

    #[test]
    fn durations() {
        assert_eq!(dur("10s"), Ok(Std::from_secs(10)));
        assert_eq!(dur("500ms"), Ok(Std::from_millis(500)));
        assert_eq!(dur("5m"), Ok(Std::from_secs(300)));
        assert_eq!(dur("5min"), Ok(Std::from_secs(300)));
        assert_eq!(dur("1h"), Ok(Std::from_secs(3600)));
        assert_eq!(dur("2d"), Ok(Std::from_secs(172_800)));
        assert_eq!(dur("0s"), Ok(Std::ZERO));
        assert_eq!(dur(" 10 s "), Ok(Std::from_secs(10)));
        // nginx's compound and fractional forms.
        assert_eq!(dur("1m30s"), Ok(Std::from_secs(90)));
        assert_eq!(dur("1m 30s"), Ok(Std::from_secs(90)));
        assert_eq!(dur("1h30m"), Ok(Std::from_secs(5400)));
        assert_eq!(dur("1.5s"), Ok(Std::from_millis(1500)));
        assert_eq!(dur("0.25s"), Ok(Std::from_millis(250)));
        assert_eq!(dur("2.5m"), Ok(Std::from_secs(150)));
        assert_eq!(dur("1w"), Ok(Std::from_secs(7 * 86_400)));
        // The long forms the message mentions.
        assert_eq!(dur("1 min"), Ok(Std::from_secs(60)));
        assert_eq!(dur("30sec"), Ok(Std::from_secs(30)));
        assert_eq!(dur("2 hours"), Ok(Std::from_secs(7200)));
        assert_eq!(dur("3days"), Ok(Std::from_secs(3 * 86_400)));
    }

    #[test]
    fn duration_errors() {
        let bare = dur("30").unwrap_err();
        assert!(
            bare.contains("no unit") && bare.contains("\"30s\""),
            "{bare}"
        );
        assert!(dur("")
            .unwrap_err()
            .starts_with("expected a duration like \"10s\""));
        assert!(dur("s").is_err());
        assert!(dur("-5s").unwrap_err().contains("negative"));
        let unknown = dur("10 parsecs").unwrap_err();
        assert!(
            unknown.contains("unknown unit \"parsecs\"") && unknown.contains(DURATION_UNITS),
            "{unknown}"
        );
        assert!(dur("1.5").unwrap_err().contains("\"1.5s\""));
        assert!(dur("0").unwrap_err().contains("no unit"));
        // Months and years: a "1M" meant as a size must not become a month.
        assert!(dur("1M").unwrap_err().contains("months and years"));
        assert!(dur("1y").unwrap_err().contains("months and years"));
        assert!(dur("1m30").is_err());
        assert!(dur("1..5s").is_err());
        assert!(dur("1s-").is_err());
        assert!(dur("0.5ns").unwrap_err().contains("too large, or finer"));
        assert!(dur("99999999999999999999s")
            .unwrap_err()
            .contains("too large"));
        assert!(dur("18446744073709551615d")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn duration_display_round_trips() {
        for s in ["10s", "500ms", "5m", "1h", "2d", "0s", "90s", "1.5ms"] {
            assert_eq!(
                s.parse::<Duration>().map(|d| d.to_string()),
                Ok(s.to_owned())
            );
        }
    }

    fn size(s: &str) -> Result<u64, String> {
        s.parse::<ByteSize>().map(|b| b.0)
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512B"), Ok(512));
        assert_eq!(size("16KiB"), Ok(16 * 1024));
        assert_eq!(size("50MiB"), Ok(50 * 1024 * 1024));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2TiB"), Ok(2 << 40));
        assert_eq!(size("10KB"), Ok(10_000));
        assert_eq!(size("10kB"), Ok(10_000));
        assert_eq!(size("10MB"), Ok(10_000_000));
        assert_eq!(size("1GB"), Ok(1_000_000_000));
        assert_eq!(size("10k"), Ok(10 * 1024));
        assert_eq!(size("10K"), Ok(10 * 1024));
        assert_eq!(size("10m"), Ok(10 << 20));
        assert_eq!(size("10M"), Ok(10 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("0B"), Ok(0));
        assert_eq!(ByteSize(50 << 20).to_string(), "50MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn size_errors() {
        assert!(size("1024").unwrap_err().contains("\"1024B\""));
        assert!(size("")
            .unwrap_err()
            .starts_with("expected a size like \"50MiB\""));
        assert!(size("-1MiB").unwrap_err().contains("negative"));
        assert!(size("5 furlongs").unwrap_err().contains("unknown unit"));
        assert!(size("17179869184GiB").unwrap_err().contains("too large"));
        assert!(size("99999999999999999999B")
            .unwrap_err()
            .contains("too large"));
    }

    fn rate(s: &str) -> Result<(u32, Std), String> {
        s.parse::<Rate>().map(|r| (r.count, r.per))
    }

    #[test]
    fn rates() {
        let sec = Std::from_secs(1);
        let min = Std::from_secs(60);
        let hour = Std::from_secs(3600);
        assert_eq!(rate("10/s"), Ok((10, sec)));
        assert_eq!(rate("10/sec"), Ok((10, sec)));
        assert_eq!(rate("10/second"), Ok((10, sec)));
        assert_eq!(rate("5/min"), Ok((5, min)));
        assert_eq!(rate("5/m"), Ok((5, min)));
        assert_eq!(rate("5/minute"), Ok((5, min)));
        assert_eq!(rate("100/h"), Ok((100, hour)));
        assert_eq!(rate("100/hour"), Ok((100, hour)));
        assert_eq!(rate("1000/day"), Ok((1000, Std::from_secs(86_400))));
        assert_eq!(rate("1000/d"), Ok((1000, Std::from_secs(86_400))));
        assert_eq!(rate(" 7 / 15m "), Ok((7, Std::from_secs(900))));
        assert_eq!(rate("3/500ms"), Ok((3, Std::from_millis(500))));
    }

    #[test]
    fn rate_period_is_the_emission_interval() {
        let r: Rate = "5/min".parse().unwrap();
        assert_eq!(r.period(), Std::from_secs(12));
        let r: Rate = "10/s".parse().unwrap();
        assert_eq!(r.period(), Std::from_millis(100));
        assert_eq!(r.to_string(), "10/s");
        assert_eq!("7/15m".parse::<Rate>().unwrap().to_string(), "7/15m");
    }

    #[test]
    fn rate_errors() {
        assert_eq!(
            rate("0/s").unwrap_err(),
            "a rate of 0 lets nothing through; remove the limit instead"
        );
        assert!(rate("10")
            .unwrap_err()
            .starts_with("expected a rate like \"10/s\""));
        assert!(rate("/s").unwrap_err().contains("not a request count"));
        assert!(rate("ten/s").unwrap_err().contains("not a request count"));
        assert!(rate("-1/s").unwrap_err().contains("negative"));
        assert!(rate("10/fortnight").unwrap_err().contains("unknown period"));
        assert!(rate("10/0s").unwrap_err().contains("cannot be 0"));
        assert!(rate("5000000000/s").unwrap_err().contains("too large"));
        // 4 billion per millisecond: the emission interval would be 0 ns.
        assert!(rate("4000000000/1ms").unwrap_err().contains("too high"));
    }

    fn cidr(s: &str) -> Result<String, String> {
        s.parse::<Cidr>().map(|c| c.to_string())
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr("10.0.0.0/8"), Ok("10.0.0.0/8".into()));
        assert_eq!(cidr("10.0.0.1"), Ok("10.0.0.1/32".into()));
        assert_eq!(cidr("127.0.0.1/32"), Ok("127.0.0.1/32".into()));
        assert_eq!(cidr("::1"), Ok("::1/128".into()));
        assert_eq!(cidr("fd00::/8"), Ok("fd00::/8".into()));
        assert_eq!(cidr("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
    }

    #[test]
    fn cidr_errors() {
        assert!(cidr("10.0.0/8").unwrap_err().starts_with("expected a CIDR"));
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("localhost").is_err());
        let host_bits = cidr("10.0.0.1/8").unwrap_err();
        assert!(host_bits.contains("\"10.0.0.0/8\""), "{host_bits}");
    }

    #[test]
    fn deserializes_through_from_str_with_the_expectation() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            d: Duration,
        }
        let t: T = toml::from_str("d = \"2s\"").unwrap();
        assert_eq!(t.d.0, Std::from_secs(2));
        let e = toml::from_str::<T>("d = 2").unwrap_err();
        assert_eq!(
            e.message(),
            "invalid type: integer `2`, expected a duration like \"10s\", \"500ms\", \"1.5s\", \"1m30s\""
        );
        let e = toml::from_str::<T>("d = \"2\"").unwrap_err();
        assert_eq!(e.span(), Some(4..7));
    }
}
