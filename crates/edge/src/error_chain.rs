//! Error text for logs: the whole chain of causes, with operating-system
//! errors written the way nginx writes them (`111: Connection refused`), so
//! an operator coming from nginx finds the errno they grep for.
//!
//! Library errors keep their own Display short and do not repeat their
//! source (the house rule); the log site asks for the chain instead.

use std::fmt;

/// Displays `error` and each of its sources, separated by `: `.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one(f, self.0)?;
        let mut cur = self.0.source();
        while let Some(c) = cur {
            f.write_str(": ")?;
            write_one(f, c)?;
            cur = c.source();
        }
        Ok(())
    }
}

fn write_one(f: &mut fmt::Formatter<'_>, e: &(dyn std::error::Error + 'static)) -> fmt::Result {
    match e.downcast_ref::<std::io::Error>() {
        Some(io) => write!(f, "{}", os_error(io)),
        None => write!(f, "{e}"),
    }
}

/// `111: Connection refused` for an OS error (Rust writes `Connection
/// refused (os error 111)`); other I/O errors as they are.
pub fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => {
            let reason = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text);
            format!("{code}: {reason}")
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect to fastcgi server 127.0.0.1:9")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn os_errors_read_like_nginx() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(os_error(&refused), "111: Connection refused");
        let e = Outer(refused);
        assert_eq!(
            ErrorChain(&e).to_string(),
            "connect to fastcgi server 127.0.0.1:9: 111: Connection refused"
        );
        let plain = std::io::Error::other("no route");
        assert_eq!(os_error(&plain), "no route");
    }
}
