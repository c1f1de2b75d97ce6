//! Header names the proxy sets or reads that `http` has no constant for, shared by the stages.

use http::header::HeaderName;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
