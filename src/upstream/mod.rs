//! Upstreams: the pools of app servers and the choice of one per request (`pool`), each
//! server's health state and in-flight count (`health_state`), the active checks (`health`),
//! the connections (`conn`), the header rules (`headers`) and the forwarding of one request
//! (`forward`).

pub mod conn;
pub mod forward;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod headers;
pub mod health;
pub mod health_state;
pub mod pool;

pub use pool::{Balance, ServerAddr, Upstream, UpstreamSettings};
