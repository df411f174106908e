//! Secrets from the environment or a file beside it: a leaf module, so
//! every command can read its token without depending on another.

use anyhow::{Context, Result};

/// A secret from `$NAME`, or the first line of the file `$NAME_FILE`
/// (Kubernetes secrets mounted as files); never from the config file.
pub(crate) fn secret(name: &str) -> Result<Option<String>> {
    if let Some(t) = std::env::var(name).ok().filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var_os(&file_var) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {file_var} {}", path.to_string_lossy()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(
                !token.is_empty(),
                "{file_var} {} is empty",
                path.to_string_lossy()
            );
            Ok(Some(token))
        }
        None => Ok(None),
    }
}
