//! The integration tests, in one binary (linkerd2-proxy's `app/integration`, Sōzu's `e2e`): the
//! helpers in `common` are compiled and linked once, not once per file. A module per concern,
//! a file per attack class. Run one: `cargo test --test it attack_catalogue::`.
//!
//! Three suites keep binaries of their own because they read process-wide state that other
//! tests would disturb: `tests/upstream_resources.rs` and `tests/ratelimit_flood.rs` (file
//! descriptors, tasks, RSS) and `tests/log_capture.rs` (the global tracing subscriber).

mod common;

mod access_log;
mod acme;
mod admin_metrics;
mod attack_catalogue;
mod attack_h2;
mod attack_header_injection;
mod attack_path_escape;
mod attack_response_splitting;
mod attack_slow_clients;
mod attack_sni_host;
mod attack_static_escape;
mod auth_basic;
mod auth_forward;
mod bans;
mod bans_redis;
mod binary;
mod build_profile;
mod check_diff;
mod code_layout;
mod command_line;
mod compression;
mod config_env;
mod connection_caps;
mod csp;
mod docs_reference;
mod e2e_compose;
mod forwarding;
mod http_redirect;
mod idle_timeout;
mod ip_rules;
mod lifecycle;
mod log_level;
mod monitoring;
mod policy_cors_cookies;
mod proxy_protocol;
mod ratelimit;
mod ratelimit_redis;
mod readme_quickstart;
mod reload;
mod route_actions;
mod routing;
mod security_headers;
mod shipped_config;
mod slow_transfers;
mod static_fallback;
mod static_files;
mod timeouts_and_errors;
mod tls;
mod upstream_faults;
mod upstream_health;
