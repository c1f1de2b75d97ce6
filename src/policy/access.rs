//! IP rules of a route (`allow` / `deny` CIDR lists) → 403.

use std::net::IpAddr;

use ipnet::IpNet;

/// `deny` wins over `allow`; a non-empty `allow` admits only the listed networks.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        if self.deny.iter().any(|net| net.contains(&client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&client))
    }
}

/// An IPv4 client seen through a dual-stack socket (`::ffff:10.0.0.1`) is matched as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_then_allow_list() {
        let rules = IpRules {
            allow: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            deny: vec!["10.9.0.0/16".parse().unwrap()],
        };
        assert!(rules.permits("10.1.2.3".parse().unwrap()));
        assert!(rules.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!rules.permits("10.9.1.1".parse().unwrap()));
        assert!(!rules.permits("192.168.1.1".parse().unwrap()));
        assert!(IpRules::default().permits("192.168.1.1".parse().unwrap()));
    }
}
