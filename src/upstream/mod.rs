//! Upstreams: the pools of app servers and the choice of one per request (`pool`), their
//! health (`health`), and the forwarding of one request (`forward`).

pub mod conn;
pub mod forward;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod health;
pub mod pool;

pub use pool::{Balance, ServerAddr, Upstream, UpstreamSettings};
