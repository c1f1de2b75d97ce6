//! An error's chain of causes (`source()`), walked in one place: searched for a cause of a
//! given type (a body limit, a reset connection) or written as one log line.

/// An error and its causes, outermost first.
pub fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |cause| cause.source())
}

/// The whole error chain as one log line (never shown to clients).
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for cause in chain(err) {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
    }
    text
}
