//! Builds the reference plugins `plugins/spam-rules`, `plugins/http-pusher` and `plugins/appservice-http`
//! for wasm32-wasip2 and puts them in `OUT_DIR`, so that the zero-setup start
//! (`weft run` without `-c`) runs them with nothing to fetch or configure
//! (`config::zero_setup`).
//!
//! It is a separate cargo build with its own target directory (the plugin is
//! not a workspace member: it targets WebAssembly). Without the wasm32-wasip2
//! target, or with `WEFT_NO_EMBEDDED_PLUGINS` set, weft is built without the
//! plugins and the zero-setup start runs without them, saying so.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Each plugin's package folder under `plugins/` and the component it builds.
const PLUGINS: [(&str, &str); 3] = [("spam-rules", "spam_rules.wasm"), ("http-pusher", "http_pusher.wasm"), ("appservice-http", "appservice_http.wasm")];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for (plugin, _) in PLUGINS {
        for input in ["src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed=../plugins/{plugin}/{input}");
        }
    }
    for input in ["plugin-sdk/src", "plugin-sdk/bindings", "plugin-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed=../{input}");
    }
    println!("cargo:rerun-if-env-changed=WEFT_NO_EMBEDDED_PLUGINS");

    for (plugin, file) in PLUGINS {
        let wasm = if env::var_os("WEFT_NO_EMBEDDED_PLUGINS").is_some() {
            Vec::new()
        } else {
            build(&manifest_dir.join("../plugins").join(plugin), &out_dir.join("plugins"), file).unwrap_or_else(|reason| {
                println!("cargo:warning=weft is built without its reference plugin {plugin}: {reason}");
                Vec::new()
            })
        };
        let destination = out_dir.join(file);
        if std::fs::read(&destination).ok().as_ref() != Some(&wasm) {
            std::fs::write(&destination, &wasm).expect("OUT_DIR is writable");
        }
    }
}

fn build(plugin: &Path, target_dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugin.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // What cargo set for this build script would otherwise apply to the
    // plugin's build (flags, target directory, the host's profile).
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = ["CARGO_HOME", "CARGO_MAKEFLAGS"].contains(&key.as_ref())
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_");
        if (key.starts_with("CARGO_") && !keep) || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" || key == "RUSTC_WORKSPACE_WRAPPER" {
            command.env_remove(key.as_ref());
        }
    }
    let output = command.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "the wasm32-wasip2 target is not installed (rustup target add wasm32-wasip2)".to_owned()
        } else {
            let last: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).rev().take(3).collect();
            format!("its build failed: {}", last.into_iter().rev().collect::<Vec<_>>().join(" / "))
        };
        return Err(reason);
    }
    let built = target_dir.join("wasm32-wasip2/release").join(file);
    std::fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))
}
