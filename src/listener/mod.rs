//! Listeners: accept → TLS → hyper (https), or the plain-HTTP redirector (http).

pub mod http;
pub mod https;
pub mod io;
pub mod tls;
