//! Builds the reference plugin `plugins/spam-rules` for wasm32-wasip2 and
//! puts it in `OUT_DIR`, so that the zero-setup start (`weft run` without
//! `-c`) runs it with nothing to fetch or configure (`config::zero_setup`).
//!
//! It is a separate cargo build with its own target directory (the plugin is
//! not a workspace member: it targets WebAssembly). Without the wasm32-wasip2
//! target, or with `WEFT_NO_EMBEDDED_PLUGINS` set, weft is built without the
//! plugin and the zero-setup start runs without it, saying so.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const PLUGIN: &str = "spam-rules";
const WASM: &str = "spam_rules.wasm";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let plugin = manifest_dir.join("../plugins").join(PLUGIN);
    for input in ["plugins/spam-rules/src", "plugins/spam-rules/Cargo.toml", "plugins/spam-rules/Cargo.lock", "plugin-sdk/src", "plugin-sdk/Cargo.toml", "wit"]
    {
        println!("cargo:rerun-if-changed=../{input}");
    }
    println!("cargo:rerun-if-env-changed=WEFT_NO_EMBEDDED_PLUGINS");

    let wasm = if env::var_os("WEFT_NO_EMBEDDED_PLUGINS").is_some() {
        Vec::new()
    } else {
        build(&plugin, &out_dir.join("plugins")).unwrap_or_else(|reason| {
            println!("cargo:warning=weft is built without its reference plugin {PLUGIN}: {reason}");
            Vec::new()
        })
    };
    let destination = out_dir.join(WASM);
    if std::fs::read(&destination).ok().as_ref() != Some(&wasm) {
        std::fs::write(&destination, &wasm).expect("OUT_DIR is writable");
    }
}

fn build(plugin: &Path, target_dir: &Path) -> Result<Vec<u8>, String> {
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
    let built = target_dir.join("wasm32-wasip2/release").join(WASM);
    std::fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))
}
