//! `weft gen-proxy-config nginx`: print the reverse proxy configuration
//! equivalent to `weft router` for the given files.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::{config, router};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Proxy {
    Nginx,
}

pub fn run(proxy: Proxy, files: &[PathBuf]) -> anyhow::Result<()> {
    let config = config::load_files(files).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let text = match proxy {
        Proxy::Nginx => router::nginx::generate(&config)?,
    };
    print!("{text}");
    Ok(())
}
