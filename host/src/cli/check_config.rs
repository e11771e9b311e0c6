//! `weft check-config`: all problems at once, or warnings (if any) and a
//! summary of the instance.

use std::{path::PathBuf, process::ExitCode};

use crate::config;

pub fn check_config(files: &[PathBuf]) -> ExitCode {
    match config::load_files(files) {
        Ok(config) => {
            for warning in config::warnings(&config) {
                eprintln!("warning: {warning}");
            }
            println!("configuration OK");
            print!("{}", config::describe(&config));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
