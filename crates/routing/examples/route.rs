//! Shows how the sample's rules route a request against a real tree.
//!
//! ```text
//! cargo run -p magestack-routing --example route -- /var/www/magento/pub GET '/static/version1/x.css?a=1' [g2]
//! ```

use std::process::ExitCode;

use magestack_routing::{normalize, Generation, RealFs, Router};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(docroot), Some(method), Some(target)) = (args.first(), args.get(1), args.get(2))
    else {
        eprintln!("usage: route <docroot> <method> <path[?query]> [g2]");
        return ExitCode::from(2);
    };
    let generation = if args.get(3).is_some_and(|g| g.eq_ignore_ascii_case("g2")) {
        Generation::G2
    } else {
        Generation::G3
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.as_str(), None),
    };
    let path = match normalize(path) {
        Ok(p) => p,
        Err(e) => {
            println!("400 Bad Request ({e})");
            return ExitCode::SUCCESS;
        }
    };
    let router = Router::new(docroot, generation);
    let route = router.route(&RealFs, method, &path, query);
    println!("$uri = {path}");
    println!("{}: {route:#?}", route.as_str());
    ExitCode::SUCCESS
}
