//! Who the client is: the peer address, or — when the peer is a trusted proxy — the nearest
//! untrusted address of its X-Forwarded-For chain.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::header_names::X_FORWARDED_FOR;
use crate::policy::access::canonical;

pub fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// Walks X-Forwarded-For from the right (the hop nearest to us) past trusted proxies; the first
/// untrusted address is the client. A malformed entry stops the walk: everything left of it is
/// whatever the client chose to write.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            return client;
        };
        client = canonical(ip);
        if !is_trusted(client, trusted_proxies) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip("8.8.8.8".parse().unwrap(), &xff(&["1.2.3.4"]), &trusted);
        assert_eq!(ip, "8.8.8.8".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = xff(&["6.6.6.6, 1.2.3.4", "10.0.0.7"]);
        let ip = client_ip("10.0.0.1".parse().unwrap(), &headers, &trusted);
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
        let garbage = xff(&["not-an-ip, 10.0.0.9"]);
        let ip = client_ip("10.0.0.1".parse().unwrap(), &garbage, &trusted);
        assert_eq!(ip, "10.0.0.9".parse::<IpAddr>().unwrap());
    }
}
