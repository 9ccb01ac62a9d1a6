//! The one error type of the client.
use std::path::PathBuf;

/// What can go wrong talking to Lamina or preparing code for it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller could not be reached (or the endpoint is not a valid URI).
    #[error(
        "cannot connect to the lamina controller at {endpoint}: {}; start it (fnctl up) or point \
         --endpoint / FNCTL_ENDPOINT at it",
        source_chain(source)
    )]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    /// The controller answered with an error status; displays as the status message. (Not a
    /// `source`: the status's own Display repeats the message with its metadata.)
    #[error("{}", status_message(.0))]
    Api(tonic::Status),
    /// A local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TLS to the controller cannot be set up (no CA for an `https://` endpoint, an unreadable CA).
    #[error("cannot connect to the lamina controller at {endpoint} over TLS: {detail}")]
    Tls { endpoint: String, detail: String },
    /// The code given is not usable (not a zip, contains a symlink, too large...).
    #[error("{0}")]
    Code(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Api(status)
    }
}

impl Error {
    /// The gRPC status, when the controller answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Api(s) => Some(s),
            _ => None,
        }
    }
}

/// The status message, or the code's description when the server sent no message.
fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{}", status.code())
    } else {
        status.message().to_string()
    }
}

/// `err` and its sources joined with ": " (tonic's transport error alone only says "transport error").
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_displays_the_status_message() {
        let e = Error::Api(tonic::Status::not_found("function `x` not found"));
        assert_eq!(e.to_string(), "function `x` not found");
        assert!(std::error::Error::source(&e).is_none());
        let e = Error::Api(tonic::Status::unavailable(""));
        assert!(e.to_string().contains("unavailable"), "{e}");
    }
}
