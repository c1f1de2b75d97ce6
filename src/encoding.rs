//! The content codings rampart sends (brotli, gzip) and the one Accept-Encoding parser
//! (RFC 9110 §12.5.3) that both response compression and precompressed static siblings
//! (`app.js.br`, `app.js.gz`) use, so the two never read a header differently.

use http::header::{self, HeaderMap, HeaderValue};

/// Elements of Accept-Encoding looked at; the rest of a longer header is ignored.
const MAX_CODINGS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// The sibling's file name suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }

    /// The ETag suffix that keeps the variant's tag distinct from the original's.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => "-br",
            Encoding::Gzip => "-gz",
        }
    }

    pub fn content_encoding(self) -> HeaderValue {
        match self {
            Encoding::Brotli => HeaderValue::from_static("br"),
            Encoding::Gzip => HeaderValue::from_static("gzip"),
        }
    }
}

/// The encodings the client accepts, highest q first, brotli before gzip on a tie (smaller).
/// `q=0` refuses a coding, also one that `*` would allow; an `identity` weighted above both
/// means the plain file.
pub fn accepted(headers: &HeaderMap) -> Vec<Encoding> {
    let mut br = None;
    let mut gzip = None;
    let mut any = None;
    let mut identity = None;
    let elements = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .take(MAX_CODINGS);
    for element in elements {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let Some(q) = quality(parts) else { continue };
        let slot = if coding.eq_ignore_ascii_case("br") {
            &mut br
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else {
            continue;
        };
        // Named twice: the lower weight wins, so a refusal is never overridden.
        *slot = Some(slot.map_or(q, |old: u16| old.min(q)));
    }
    let br = br.or(any).unwrap_or(0);
    let gzip = gzip.or(any).unwrap_or(0);
    // An explicit preference for the plain file over both codings (as `compress` reads it).
    if identity.is_some_and(|identity| identity > br.max(gzip)) {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2);
    match (br > 0, gzip > 0) {
        (true, true) if gzip > br => out.extend([Encoding::Gzip, Encoding::Brotli]),
        (true, true) => out.extend([Encoding::Brotli, Encoding::Gzip]),
        (true, false) => out.push(Encoding::Brotli),
        (false, true) => out.push(Encoding::Gzip),
        (false, false) => {}
    }
    out
}

/// The weight of an element in thousandths (default 1000), `None` if its parameters are
/// malformed (the element is then ignored).
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some(q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    fn accept(values: &[&'static str]) -> Vec<Encoding> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        }
        accepted(&headers)
    }

    #[test]
    fn prefers_brotli_and_honours_weights() {
        assert_eq!(accept(&[]), vec![]);
        assert_eq!(accept(&["gzip, deflate, br, zstd"]), vec![Brotli, Gzip]);
        assert_eq!(accept(&["gzip"]), vec![Gzip]);
        assert_eq!(accept(&["BR"]), vec![Brotli]);
        assert_eq!(accept(&["gzip;q=1.0, br;q=0.5"]), vec![Gzip, Brotli]);
        assert_eq!(accept(&["gzip", "br"]), vec![Brotli, Gzip]);
        assert_eq!(accept(&["identity"]), vec![]);
        assert_eq!(accept(&["identity, br;q=0.5"]), vec![]);
        assert_eq!(accept(&["identity;q=0.5, br"]), vec![Brotli]);
        assert_eq!(accept(&["identity, br"]), vec![Brotli]);
        assert_eq!(accept(&["*"]), vec![Brotli, Gzip]);
    }

    #[test]
    fn weights_are_thousandths() {
        assert_eq!(quality("q=0.25".split(';')), Some(250));
        assert_eq!(quality("q=0.5".split(';')), Some(500));
        assert_eq!(quality("q=1.000".split(';')), Some(1000));
        assert_eq!(quality("q=1.5".split(';')), None);
        assert_eq!(
            accept(&["gzip, gzip;q=0"]),
            vec![],
            "a refusal is never overridden"
        );
    }

    #[test]
    fn q_zero_refuses() {
        assert_eq!(accept(&["br;q=0, gzip"]), vec![Gzip]);
        assert_eq!(accept(&["gzip;q=0.000, br"]), vec![Brotli]);
        assert_eq!(accept(&["*, br;q=0"]), vec![Gzip]);
        assert_eq!(accept(&["*;q=0"]), vec![]);
        assert_eq!(accept(&["br; q=0"]), vec![]);
    }

    #[test]
    fn malformed_weights_are_ignored() {
        assert_eq!(accept(&["br;q=2, gzip;q=abc"]), vec![]);
        assert_eq!(accept(&["br;q=0.0001"]), vec![]);
        assert_eq!(accept(&["br;q"]), vec![]);
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
    }
}
