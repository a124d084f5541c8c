//! Passes the nginx build's features and version to the module as cfgs, and
//! the location of the nginx binary built alongside to the integration tests.
//!
//! Needs `nginx-sys` as a direct dependency: cargo gives `DEP_NGINX_*` only to
//! direct dependents of a `links` crate.
use std::env;

fn main() {
    forward_list("FEATURES", "ngx_feature");
    forward_list("OS", "ngx_os");
    version_cfgs();
    test_nginx_binary();
}

/// Re-emits a comma-separated `DEP_NGINX_<name>` list as `cfg(<cfg>="value")`.
fn forward_list(name: &str, cfg: &str) {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_{name}_CHECK");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_{name}");
    let check = env::var(format!("DEP_NGINX_{name}_CHECK")).unwrap_or("any()".into());
    println!("cargo::rustc-check-cfg=cfg({cfg}, values({check}))");
    if let Ok(values) = env::var(format!("DEP_NGINX_{name}")) {
        for value in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}=\"{value}\"");
        }
    }
}

/// `nginx1_23`: the Cookie header moved from an array to a linked list.
fn version_cfgs() {
    const CHECKS: &[(u64, &str)] = &[(1_023_000, "nginx1_23")];
    for (_, name) in CHECKS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let version: u64 = env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (min, name) in CHECKS {
        if version >= *min {
            println!("cargo::rustc-cfg={name}");
        }
    }
}

/// The integration tests run the nginx binary this module was built against:
/// the vendored build's own, or the distribution's when building against the
/// `nginx-dev` headers (whose build directory holds no binary).
fn test_nginx_binary() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    let built = env::var("DEP_NGINX_BUILD_DIR")
        .map(|dir| format!("{dir}/nginx"))
        .ok()
        .filter(|bin| std::path::Path::new(bin).exists());
    let bin = built.unwrap_or_else(|| "/usr/sbin/nginx".into());
    println!("cargo::rustc-env=STATIC_GEN_BUILT_NGINX={bin}");
}
