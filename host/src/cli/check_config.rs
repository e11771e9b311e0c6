//! `weft check-config`: all problems at once, or warnings (if any) and a
//! summary of the instance; with `--destination`, the instance that sends
//! federation transactions to that server.

use std::{path::PathBuf, process::ExitCode};

use crate::config;

pub fn check_config(files: &[PathBuf], destination: Option<&str>) -> ExitCode {
    match config::load_files(files) {
        Ok(config) => {
            for warning in config::warnings(&config) {
                eprintln!("warning: {warning}");
            }
            println!("configuration OK");
            print!("{}", config::describe(&config));
            if let Some(destination) = destination {
                println!("federation transactions to {destination} are sent by {}", config.federation_sender_of(destination));
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
