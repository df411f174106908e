//! An edge's TOML, read as the edge reads it, reduced to what the checks need.

use crate::inputs::EdgeFacts;

/// The facts of an edge config; `Err` with the loader's messages.
pub fn edge_facts(origin: &str, toml: &str) -> Result<EdgeFacts, String> {
    let v = magestack_config::load_str(toml, origin).map_err(|e| e.to_string())?;
    let mut ports: Vec<u16> = v.server.listen.iter().map(|a| a.port()).collect();
    ports.extend(v.server.purge_listen.map(|a| a.port()));
    Ok(EdgeFacts {
        origin: origin.to_owned(),
        pools: v
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.max_inflight as u64,
                    p.endpoints.iter().map(|e| format!("{e:?}")).collect(),
                )
            })
            .collect(),
        purge_bus: v.cluster.redis_url.is_some(),
        ports,
    })
}
