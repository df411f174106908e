//! The object store behind `s3://bucket/prefix` sources: AWS S3 or an
//! S3-compatible server (path-style), credentials from the standard AWS
//! chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` for IRSA, the instance
//! role), through `object_store`.
//!
//! Every call is bounded: the headers of a GET within the store timeout,
//! then each body chunk within it again, with at most one quick retry, so a
//! store that is down or hangs gives an error in seconds, never a hang.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::disk::Meta;

/// Where a source's objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/`.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` = AWS.
    pub endpoint: Option<String>,
    /// Region; `None` = `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Bound on each store call.
    pub timeout: Duration,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("object store s3://{bucket}: {source}")]
pub struct StoreError {
    bucket: String,
    #[source]
    source: object_store::Error,
}

/// Why an object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The store answered: no such object.
    #[error("not found")]
    NotFound,
    /// The store did not answer in time, refused, or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The local disk failed.
    #[error("disk: {0}")]
    Disk(String),
}

/// One bucket and prefix.
#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    spec: RemoteSpec,
}

impl Remote {
    /// A client for `spec`. Opens no connection.
    ///
    /// # Errors
    ///
    /// When the builder refuses the settings (a malformed endpoint).
    pub fn new(spec: RemoteSpec) -> Result<Self, StoreError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&spec.bucket)
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 1,
                retry_timeout: spec.timeout,
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(spec.timeout)
                    .with_timeout_disabled(),
            );
        if let Some(region) = &spec.region {
            b = b.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        if let Some(endpoint) = &spec.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(|source| StoreError {
            bucket: spec.bucket.clone(),
            source,
        })?;
        Ok(Self {
            store: Arc::new(store),
            spec,
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.spec.bucket
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    fn unavailable(e: &object_store::Error) -> FetchError {
        match e {
            object_store::Error::NotFound { .. } => FetchError::NotFound,
            other => FetchError::Unavailable(other.to_string()),
        }
    }

    /// Streams object `key` into `dest`, and returns its metadata.
    ///
    /// # Errors
    ///
    /// [`FetchError::NotFound`] when the store has no such object,
    /// [`FetchError::Unavailable`] when it fails or does not answer in time,
    /// [`FetchError::Disk`] when `dest` cannot be written.
    pub async fn fetch_to(&self, key: &str, dest: &Path) -> Result<Meta, FetchError> {
        let t = self.spec.timeout;
        let path = object_store::path::Path::from(key);
        let got = tokio::time::timeout(t, self.store.get(&path))
            .await
            .map_err(|_| FetchError::Unavailable("timed out".into()))?
            .map_err(|e| Self::unavailable(&e))?;
        let meta = &got.meta;
        let etag = match meta.e_tag.as_deref() {
            Some(e) if e.starts_with('"') => e.to_owned(),
            Some(e) if !e.is_empty() => format!("\"{e}\""),
            _ => format!(
                "\"{:x}-{:x}\"",
                meta.last_modified.timestamp().max(0),
                meta.size
            ),
        };
        let meta = Meta {
            etag,
            last_modified: u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
            size: meta.size,
            content_type: String::new(),
        };
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| FetchError::Disk(e.to_string()))?;
        let mut stream = got.into_stream();
        let mut written = 0u64;
        loop {
            let next = tokio::time::timeout(t, stream.next())
                .await
                .map_err(|_| FetchError::Unavailable("body timed out".into()))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| Self::unavailable(&e))?;
            written += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| FetchError::Disk(e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| FetchError::Disk(e.to_string()))?;
        if written != meta.size {
            return Err(FetchError::Unavailable(format!(
                "short body: {written} of {} bytes",
                meta.size
            )));
        }
        Ok(meta)
    }

    /// Uploads `bytes` as `key` (for `magestack media sync` and tests).
    ///
    /// # Errors
    ///
    /// [`FetchError::Unavailable`] when the store refuses or fails.
    pub async fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<(), FetchError> {
        let path = object_store::path::Path::from(key);
        self.store
            .put(&path, object_store::PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| Self::unavailable(&e))
    }
}
