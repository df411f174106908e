//! The admin area's paths, shared by the pool router, the admin allowlist
//! and the injection profile so they cannot disagree.

/// Magento's admin front name (`backend/frontName`): `/<front>[/…]` or
/// `/index.php/<front>[/…]`.
pub fn is_admin_front(path: &str, front: &str) -> bool {
    let rest = path.strip_prefix("/index.php").unwrap_or(path);
    !front.is_empty()
        && rest
            .strip_prefix('/')
            .and_then(|r| r.strip_prefix(front))
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
}
