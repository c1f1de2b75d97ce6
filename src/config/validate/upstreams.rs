//! `[upstreams.NAME]`: servers, balancing, timeouts, health checks.

#[allow(unused_imports)]
use super::*;

pub(super) fn upstreams(
    v: &mut Validator<'_>,
    upstreams: &BTreeMap<String, model::Upstream>,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut compiled = BTreeMap::new();
    for (name, upstream) in upstreams {
        let prefix = format!("upstreams.{name}");
        if upstream.servers.is_empty() {
            v.near(
                0..0,
                &format!("{prefix}.servers"),
                "list at least one server",
            );
            continue;
        }
        let mut addrs = Vec::new();
        for server in &upstream.servers {
            match ServerAddr::parse(server.get_ref()) {
                Ok(addr) => addrs.push(addr),
                Err(message) => v.at(server, &format!("{prefix}.servers"), message),
            }
        }
        let balance = match upstream.balance.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            _ => {
                v.at(
                    &upstream.balance,
                    &format!("{prefix}.balance"),
                    "expected \"round_robin\" or \"least_conn\"",
                );
                Balance::RoundRobin
            }
        };
        let health_check = upstream
            .health_check
            .as_ref()
            .and_then(|check| health_check(v, &prefix, check));
        if upstream.connect_timeout.0.is_zero() || upstream.response_timeout.0.is_zero() {
            v.near(
                0..0,
                &format!("{prefix}.connect_timeout"),
                "timeouts must be more than 0s",
            );
        }
        if addrs.len() == upstream.servers.len() {
            let settings = UpstreamSettings {
                connect_timeout: upstream.connect_timeout.0,
                response_timeout: upstream.response_timeout.0,
                retries: upstream.retries,
                balance,
                health_check,
                passive_failures: upstream.passive_failures,
                keepalive: upstream.keepalive as usize,
                keepalive_timeout: upstream.keepalive_timeout.0,
            };
            compiled.insert(
                name.clone(),
                Arc::new(Upstream::new(name.clone(), addrs, settings)),
            );
        }
    }
    compiled
}

/// An upstream's `health_check`. Its fields carry no span: errors point at the
/// `health_check` line and name the field.
pub(super) fn health_check(
    v: &mut Validator<'_>,
    prefix: &str,
    check: &model::HealthCheck,
) -> Option<HealthCheck> {
    let span = v.source.span_of_key(&format!("{prefix}.health_check"));
    let errors = v.errors.len();
    let key = |field: &str| format!("{prefix}.health_check.{field}");
    let path = match check.path.parse::<PathAndQuery>() {
        Ok(path) if check.path.starts_with('/') => Some(path),
        _ => {
            v.near(
                span.clone(),
                &key("path"),
                "expected a path like \"/health/\" (starting with /)",
            );
            None
        }
    };
    if check.interval.0.is_zero() {
        v.near(span.clone(), &key("interval"), "must be more than 0s");
    }
    if check.timeout.0.is_zero() {
        v.near(span.clone(), &key("timeout"), "must be more than 0s");
    } else if check.timeout.0 > check.interval.0 {
        v.near(
            span.clone(),
            &key("timeout"),
            "must not be longer than interval (a check ends before the next one is due)",
        );
    }
    for (field, value) in [("healthy", check.healthy), ("unhealthy", check.unhealthy)] {
        if value == 0 {
            v.near(
                span.clone(),
                &key(field),
                "must be at least 1 (consecutive checks that change the state)",
            );
        }
    }
    if v.errors.len() > errors {
        return None;
    }
    Some(HealthCheck {
        path: path?,
        interval: check.interval.0,
        timeout: check.timeout.0,
        healthy: check.healthy,
        unhealthy: check.unhealthy,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn servers_balance_and_timeouts() {
        let good = "[upstreams.app]\nservers = [\"http://127.0.0.1:8000\", \"unix:/run/app.sock\"]\nbalance = \"least_conn\"";
        let snapshot = load(&with(good)).unwrap();
        assert_eq!(snapshot.upstreams.len(), 1);
        assert_eq!(
            error_keys("[upstreams.app]\nservers = []"),
            ["upstreams.app.servers"]
        );
        assert_eq!(
            error_keys(
                "[upstreams.app]\nservers = [\"http://127.0.0.1:8000\"]\nbalance = \"random\""
            ),
            ["upstreams.app.balance"]
        );
        assert_eq!(
            error_keys(
                "[upstreams.app]\nservers = [\"http://127.0.0.1:8000\"]\nconnect_timeout = \"0s\""
            ),
            ["upstreams.app.connect_timeout"]
        );
    }
}
