//! Upstreams: the pools of app servers (`pool`) and the forwarding of one request (`forward`).

pub mod forward;
pub mod pool;

pub use pool::{ServerAddr, Upstream, UpstreamSettings};
