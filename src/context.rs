//! Error messages that name what failed once.
//!
//! Errors are built from the bottom up: a fetch error names the CID it could not get, and
//! each layer above adds what it was working on (a path, a CID/path spec). When the two
//! are the same thing (reading `/.ipfs/<CID>` fails on `<CID>` itself), saying both makes
//! the message say the CID twice; [`with_context`] says it once.

/// `what: message`; or `message` alone when it already starts with `what`; or, when it
/// starts with the last component of the path `what` (an error about `/.ipfs/<CID>` that
/// starts with the CID), the path with the message after it.
pub fn with_context(what: &str, message: &str) -> String {
    if message.starts_with(&format!("{what}: ")) {
        return message.to_string();
    }
    let trimmed = what.trim_end_matches('/');
    if let Some((parent, last)) = trimmed.rsplit_once('/')
        && !last.is_empty()
        && message.starts_with(&format!("{last}: "))
    {
        return format!("{parent}/{message}");
    }
    format!("{what}: {message}")
}

#[cfg(test)]
mod tests {
    use super::with_context;

    #[test]
    fn a_cid_or_path_is_named_once() {
        assert_eq!(with_context("Qm1/a.txt", "Qm2: not found"), "Qm1/a.txt: Qm2: not found");
        assert_eq!(with_context("Qm1", "Qm1: not found"), "Qm1: not found");
        assert_eq!(with_context("/.ipfs/Qm1", "Qm1: not found"), "/.ipfs/Qm1: not found");
        assert_eq!(with_context("/ipfs/Qm1/", "Qm1: not found"), "/ipfs/Qm1: not found");
        assert_eq!(with_context("/a/b", "b is odd"), "/a/b: b is odd");
    }
}
