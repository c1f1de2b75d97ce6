//! Authentication at the edge (DESIGN §5b): a route's `basic_auth` (a users file of argon2 or
//! bcrypt hashes) or `forward_auth` (an auth server asked first). Both run after the IP rules,
//! the CORS preflight and the rate limit, so a refused or over-quota client costs no hash and
//! no round trip, and before the body limit and the action.

pub mod basic;
pub mod forward;
