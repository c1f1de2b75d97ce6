//! `[client]`: what clients may send, and the connection caps.

#[allow(unused_imports)]
use super::*;

/// Beyond a day a client timeout protects nothing, and a deadline that far can overflow the
/// clock (`now + timeout` panics near the end of `Instant`'s range).
pub(super) const MAX_CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(86_400);

pub(super) fn client_limits(v: &mut Validator<'_>, client: &model::Client) -> ClientLimits {
    let max_header_bytes = client.max_header_bytes.0;
    if max_header_bytes < 1024 {
        v.near(0..0, "client.max_header_bytes", "must be at least 1KiB");
    }
    for (value, key) in [
        (client.header_timeout.0, "client.header_timeout"),
        (client.idle_timeout.0, "client.idle_timeout"),
        (client.body_timeout.0, "client.body_timeout"),
        (client.send_timeout.0, "client.send_timeout"),
    ] {
        if value.is_zero() {
            v.near(0..0, key, "must be more than 0s");
        } else if value > MAX_CLIENT_TIMEOUT {
            v.near(0..0, key, "must be at most 1d");
        }
    }
    if client.max_connections == 0 {
        v.near(0..0, "client.max_connections", "must be at least 1");
    }
    ClientLimits {
        trusted_proxies: client
            .trusted_proxies
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
            .into(),
        max_body: client.max_body.0,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        header_timeout: client.header_timeout.0,
        idle_timeout: client.idle_timeout.0,
        body_timeout: client.body_timeout.0,
        send_timeout: client.send_timeout.0,
        connection_caps: Caps {
            total: usize::try_from(client.max_connections).unwrap_or(usize::MAX),
            per_ip: usize::try_from(client.max_connections_per_ip).unwrap_or(usize::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn limits_and_timeouts() {
        let snapshot = load(&with(
            "[client]\nmax_body = \"1MiB\"\nmax_connections_per_ip = 7",
        ))
        .unwrap();
        assert_eq!(snapshot.client.max_body, 1024 * 1024);
        assert_eq!(snapshot.client.connection_caps.per_ip, 7);
        assert_eq!(
            error_keys("[client]\nheader_timeout = \"0s\""),
            ["client.header_timeout"]
        );
        assert_eq!(
            error_keys("[client]\nidle_timeout = \"2d\""),
            ["client.idle_timeout"]
        );
    }
}
