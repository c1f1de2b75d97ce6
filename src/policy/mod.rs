//! Per-route policies applied on the request path: IP rules before anything else is done for
//! the client, security headers on every response.

pub mod access;
pub mod auth;
pub mod ban;
pub mod cookies;
pub mod cors;
pub mod csp;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod headers;
pub mod ratelimit;
