//! `[listen]`: the sockets and the worker count.

#[allow(unused_imports)]
use super::*;

pub(super) fn socket_addr(
    v: &mut Validator<'_>,
    value: &Spanned<String>,
    key: &str,
) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            v.at(
                value,
                key,
                "expected an address with a port, like \"0.0.0.0:8443\" or \"[::]:8443\"",
            );
            None
        }
    }
}

pub(super) fn listen(v: &mut Validator<'_>, listen: &model::Listen) -> Option<Listen> {
    let https = socket_addr(v, &listen.https, "listen.https");
    let http = listen
        .http
        .as_ref()
        .and_then(|addr| socket_addr(v, addr, "listen.http"));
    let admin = listen
        .admin
        .as_ref()
        .and_then(|addr| socket_addr(v, addr, "listen.admin"));
    if listen.https_port_public == 0 {
        v.near(
            0..0,
            "listen.https_port_public",
            "must be a port from 1 to 65535",
        );
    }
    let status = *listen.http_redirect_status.get_ref();
    if status != 301 && status != 308 {
        v.at(
            &listen.http_redirect_status,
            "listen.http_redirect_status",
            "must be 301 or 308 (both keep clients on the redirect; 308 also keeps the method)",
        );
    }
    if let (Some(https), Some(http)) = (https, http) {
        if https == http && https.port() != 0 {
            v.at(
                listen.http.as_ref()?,
                "listen.http",
                "same address as listen.https",
            );
        }
    }
    Some(Listen {
        https: https?,
        http,
        admin,
        http_redirect_status: StatusCode::from_u16(status).ok()?,
        https_port_public: listen.https_port_public,
        shutdown_grace: listen.shutdown_grace.0,
        workers: workers(v, listen.workers.as_ref()),
        proxy_protocol_from: listen.proxy_protocol_from.iter().map(|c| c.0).collect(),
    })
}

/// Most workers a config may ask for: far above any machine this runs on, low enough that a
/// typo cannot start a million threads.
pub(super) const MAX_WORKERS: u32 = 256;

/// `listen.workers`: absent or 0 is one per core the process may use
/// (`available_parallelism` reads the affinity mask and a cgroup's CPU quota).
pub(super) fn workers(v: &mut Validator<'_>, workers: Option<&Spanned<u32>>) -> usize {
    let auto = || std::thread::available_parallelism().map_or(1, |n| n.get());
    match workers {
        None => auto(),
        Some(n) if *n.get_ref() == 0 => auto(),
        Some(n) if *n.get_ref() > MAX_WORKERS => {
            v.at(
                n,
                "listen.workers",
                format!("at most {MAX_WORKERS} (0 or absent: one per core)"),
            );
            1
        }
        Some(n) => *n.get_ref() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn addresses_redirect_status_and_workers() {
        let snapshot = load(&with("")).unwrap();
        assert!(snapshot.listen.workers >= 1);
        let text = with("").replace("https = \"127.0.0.1:0\"", "https = \"127.0.0.1\"");
        let keys: Vec<String> = load(&text).unwrap_err().into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["listen.https"]);
        let text = with("").replace(
            "https = \"127.0.0.1:0\"",
            "https = \"127.0.0.1:0\"\nhttp_redirect_status = 302\nworkers = 300",
        );
        let mut keys: Vec<String> = load(&text).unwrap_err().into_iter().map(|e| e.0).collect();
        keys.sort();
        assert_eq!(keys, ["listen.http_redirect_status", "listen.workers"]);
    }
}
