//! `magestack media sync`: a release's `pub/static` (and `pub/media`) into
//! the object-store sources the edge serves them from.
//!
//! Static files go to `<static prefix>/<release>/<path>`, so the edge
//! serves `/static/version<release>/<path>` from them and two releases sit
//! side by side during a rollout; media files go to `<media prefix>/<path>`.
//! Keys are built by the same rules as the edge's (`magestack_media::key`):
//! a file whose path is not a plain name is skipped with a warning, never
//! uploaded under another name.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use magestack_config::FileSource;
use magestack_media_store::{Remote, RemoteSpec};

use crate::cli::MediaSyncArgs;

/// Every regular file under `dir`, as paths relative to it with `/`.
fn files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for entry in
            std::fs::read_dir(&abs).with_context(|| format!("reading {}", abs.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            let rel = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn remote(source: &FileSource, cfg: &magestack_config::Validated) -> Result<Remote> {
    let FileSource::S3 { bucket, prefix } = source else {
        bail!("the source is the docroot: nothing to upload");
    };
    Ok(Remote::new(RemoteSpec {
        bucket: bucket.clone(),
        prefix: prefix.clone(),
        endpoint: cfg.object_store.endpoint.clone(),
        region: cfg.object_store.region.clone(),
        timeout: cfg
            .media
            .store_timeout
            .max(std::time::Duration::from_secs(30)),
    })?)
}

/// `(key, file)` pairs to upload.
type Jobs = Vec<(String, PathBuf)>;

/// `(key, file)` pairs to upload, and the files skipped.
fn plan(dir: &Path, to_key: impl Fn(&str) -> Option<String>) -> Result<(Jobs, Vec<String>)> {
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for rel in files(dir)? {
        if rel.ends_with(".htaccess") {
            continue;
        }
        match to_key(&rel) {
            Some(key) => jobs.push((key, dir.join(&rel))),
            None => skipped.push(rel),
        }
    }
    Ok((jobs, skipped))
}

async fn upload(
    remote: Arc<Remote>,
    jobs: Vec<(String, PathBuf)>,
    concurrency: usize,
) -> (u64, u64, Vec<String>) {
    let results: Vec<_> = futures_util::stream::iter(jobs)
        .map(|(key, path)| {
            let remote = Arc::clone(&remote);
            async move {
                let bytes = match tokio::fs::read(&path).await {
                    Ok(b) => b,
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                };
                let len = bytes.len() as u64;
                remote
                    .put(&key, bytes.into())
                    .await
                    .map(|()| len)
                    .map_err(|e| format!("{key}: {e}"))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut files = 0;
    let mut bytes = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(n) => {
                files += 1;
                bytes += n;
            }
            Err(e) => errors.push(e),
        }
    }
    (files, bytes, errors)
}

pub fn run(args: &MediaSyncArgs) -> Result<ExitCode> {
    let cfg = magestack_config::load_file(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.static_dir.is_none() && args.media_dir.is_none() {
        bail!("nothing to sync: give --static-dir and/or --media-dir");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut failed = false;
    if let Some(dir) = &args.static_dir {
        let release = match &args.release {
            Some(r) => r.clone(),
            None => std::fs::read_to_string(dir.join("deployed_version.txt"))
                .with_context(|| {
                    format!("{}/deployed_version.txt (or give --release)", dir.display())
                })?
                .trim()
                .to_owned(),
        };
        let remote = remote(&cfg.static_files.source, &cfg).context("[static] source")?;
        let prefix = remote.prefix().to_owned();
        let (jobs, skipped) = plan(dir, |rel| {
            magestack_media::static_key(&prefix, &format!("/static/{rel}"), Some(&release))
                .ok()
                .filter(|k| k.release.as_deref() == Some(release.as_str()))
                .map(|k| k.key)
        })?;
        for s in &skipped {
            eprintln!("magestack: skipped static/{s}: not a plain path");
        }
        let bucket = remote.bucket().to_owned();
        let (files, bytes, errors) = rt.block_on(upload(Arc::new(remote), jobs, args.concurrency));
        for e in &errors {
            eprintln!("magestack: upload failed: {e}");
        }
        println!(
            "static: {files} files, {bytes} bytes to s3://{bucket}/{prefix}/{release}/ ({} failed)",
            errors.len()
        );
        failed |= !errors.is_empty();
    }
    if let Some(dir) = &args.media_dir {
        let remote = remote(&cfg.media.source, &cfg).context("[media] source")?;
        let prefix = remote.prefix().to_owned();
        let (jobs, skipped) = plan(dir, |rel| {
            magestack_media::media_key(&prefix, &format!("/media/{rel}")).ok()
        })?;
        for s in &skipped {
            eprintln!("magestack: skipped media/{s}: not a plain path");
        }
        let bucket = remote.bucket().to_owned();
        let (files, bytes, errors) = rt.block_on(upload(Arc::new(remote), jobs, args.concurrency));
        for e in &errors {
            eprintln!("magestack: upload failed: {e}");
        }
        println!(
            "media: {files} files, {bytes} bytes to s3://{bucket}/{prefix}/ ({} failed)",
            errors.len()
        );
        failed |= !errors.is_empty();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
