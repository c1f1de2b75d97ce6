//! `[acme]` compiled: the CA, the account contact, where state is kept, which challenge.

use std::path::PathBuf;

/// Where certificates, keys, the account and pending challenges are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// A directory on this host (a volume in compose): keys 0600, atomic writes, a lock file.
    Dir(PathBuf),
    /// Redis at this URL (`[rate_limit].redis_url`): shared by every replica.
    Redis(String),
}

/// The challenge rampart answers to prove it controls a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `/.well-known/acme-challenge/TOKEN` on the plain-http listener (port 80).
    Http01,
    /// A handshake offering ALPN `acme-tls/1` on the https listener (port 443).
    TlsAlpn01,
}

impl Challenge {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http-01" => Some(Challenge::Http01),
            "tls-alpn-01" => Some(Challenge::TlsAlpn01),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// External account binding (RFC 8555 §7.3.4): the CA's key id and its HMAC key, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key in a log line.
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The compiled `[acme]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub storage: StorageKind,
    pub challenge: Challenge,
    pub ca_certificates: Option<PathBuf>,
    pub eab: Option<Eab>,
    pub timing: super::Timing,
}

/// Why a host name cannot get an ACME certificate here, if it cannot.
pub fn refuse_host(host: &str, challenge: Challenge) -> Option<String> {
    let host = host.trim();
    if host.starts_with("*.") || host == "*" {
        return Some(format!(
            "`{host}`: a wildcard certificate needs the DNS-01 challenge, which rampart does not implement; list the names, or use cert/key from another tool"
        ));
    }
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Some(format!(
            "`{host}`: an IP address cannot be proven with {}; use a DNS name",
            challenge.as_str()
        ));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Some(format!(
            "`{host}` is not a public DNS name a CA can issue for (letters, digits, '-', at least one dot)"
        ));
    }
    None
}

/// Base64url (with or without padding, or standard base64) as CAs print EAB keys.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.trim().trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_ips_and_bad_names_are_refused() {
        let c = Challenge::Http01;
        assert!(refuse_host("*.example.org", c).unwrap().contains("DNS-01"));
        assert!(refuse_host("192.0.2.1", c).unwrap().contains("IP address"));
        assert!(refuse_host("::1", c).unwrap().contains("IP address"));
        assert!(refuse_host("localhost", c).is_some());
        assert!(refuse_host("bad_name.example", c).is_some());
        assert!(refuse_host("www.example.org", c).is_none());
    }

    #[test]
    fn eab_keys_decode() {
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_base64("not base64!").is_none());
    }
}

/// Base64url without padding (RFC 4648 §5).
pub fn encode_base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn round_trip() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"hello world"] {
            let text = super::encode_base64url(data);
            assert!(!text.contains('='));
            if !data.is_empty() {
                assert_eq!(super::decode_base64(&text).unwrap(), data);
            }
        }
    }
}
