//! PHP-FPM's status page (`pm.status_path`), read over FastCGI.
//!
//! [`parse_status`] is pure (the JSON of `GET <status_path>?json`);
//! [`fetch_status`] sends the request with a [`Client`], ideally one pointed
//! at `pm.status_listen`, which FPM answers from its master process, so the
//! figures arrive even while every worker is busy (exactly when they
//! matter).

#[cfg(feature = "client")]
use crate::client::{Client, RequestBody};

/// The figures of one FPM pool, as its status page reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct FpmStatus {
    /// FPM's pool name.
    pub pool: String,
    /// `static`, `dynamic` or `ondemand`.
    #[serde(rename = "process manager")]
    pub process_manager: String,
    /// Requests accepted since start.
    #[serde(rename = "accepted conn")]
    pub accepted_conn: u64,
    /// Connections waiting in the listen backlog now.
    #[serde(rename = "listen queue")]
    pub listen_queue: u64,
    /// Most connections ever waiting in the backlog.
    #[serde(rename = "max listen queue")]
    pub max_listen_queue: u64,
    /// Size of the backlog.
    #[serde(rename = "listen queue len")]
    pub listen_queue_len: u64,
    /// Workers waiting for a request.
    #[serde(rename = "idle processes")]
    pub idle_processes: u64,
    /// Workers serving a request.
    #[serde(rename = "active processes")]
    pub active_processes: u64,
    /// Workers alive.
    #[serde(rename = "total processes")]
    pub total_processes: u64,
    /// Most workers ever active at once.
    #[serde(rename = "max active processes")]
    pub max_active_processes: u64,
    /// Times FPM wanted a worker beyond `pm.max_children`.
    #[serde(rename = "max children reached")]
    pub max_children_reached: u64,
    /// Requests slower than `request_slowlog_timeout`.
    #[serde(rename = "slow requests", default)]
    pub slow_requests: u64,
}

/// Why a status answer could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The FastCGI request failed.
    #[cfg(feature = "client")]
    #[error("status request failed: {0}")]
    Request(#[from] crate::client::Error),
    /// FPM answered with another status (404: `pm.status_path` not set for
    /// this pool; 403: `security.limit_extensions`).
    #[error("status page answered {0}")]
    Http(u16),
    /// The body could not be read.
    #[error("status body: {0}")]
    Body(String),
    /// The body is not FPM's status JSON.
    #[error("not PHP-FPM status JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses the JSON of `<pm.status_path>?json`.
///
/// # Errors
///
/// [`StatusError::Json`] when it is not FPM's status document.
pub fn parse_status(body: &[u8]) -> Result<FpmStatus, StatusError> {
    Ok(serde_json::from_slice(body)?)
}

/// Reads the status page at `path` (e.g. `/status`) through `client`.
///
/// # Errors
///
/// The request failed, FPM answered non-200, or the body is not status JSON.
#[cfg(feature = "client")]
pub async fn fetch_status(client: &Client, path: &str) -> Result<FpmStatus, StatusError> {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    let mut params = crate::codec::Params::with_capacity(8);
    let p = Bytes::copy_from_slice(path.as_bytes());
    params.push(&b"GATEWAY_INTERFACE"[..], &b"CGI/1.1"[..]);
    params.push(&b"REQUEST_METHOD"[..], &b"GET"[..]);
    params.push(&b"SCRIPT_NAME"[..], p.clone());
    params.push(&b"SCRIPT_FILENAME"[..], p.clone());
    params.push(&b"REQUEST_URI"[..], Bytes::from(format!("{path}?json")));
    params.push(&b"QUERY_STRING"[..], &b"json"[..]);
    params.push(&b"SERVER_PROTOCOL"[..], &b"HTTP/1.1"[..]);
    let resp = client.request(&params, RequestBody::Empty).await?;
    if resp.status != http::StatusCode::OK {
        return Err(StatusError::Http(resp.status.as_u16()));
    }
    let body = resp
        .body
        .collect()
        .await
        .map_err(|e| StatusError::Body(e.to_string()))?
        .to_bytes();
    parse_status(&body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_fpm_82_json() {
        let body = br#"{"pool":"storefront","process manager":"static","start time":1795338323,"start since":12,"accepted conn":41,"listen queue":0,"max listen queue":3,"listen queue len":511,"idle processes":7,"active processes":1,"total processes":8,"max active processes":8,"max children reached":2,"slow requests":0,"memory peak":2097152}"#;
        let s = parse_status(body).unwrap();
        assert_eq!(s.pool, "storefront");
        assert_eq!(
            (s.active_processes, s.idle_processes, s.total_processes),
            (1, 7, 8)
        );
        assert_eq!((s.listen_queue, s.max_children_reached), (0, 2));
    }

    #[test]
    fn rejects_what_is_not_status_json() {
        assert!(matches!(
            parse_status(b"pool: www\n"),
            Err(StatusError::Json(_))
        ));
        assert!(matches!(parse_status(b"{}"), Err(StatusError::Json(_))));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_status(&body);
        }
    }
}
