//! `weft check-config`: all problems at once, or a summary of the instance.

use std::{path::PathBuf, process::ExitCode};

use crate::config;

pub fn check_config(files: &[PathBuf]) -> ExitCode {
    match config::load_files(files) {
        Ok(config) => {
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
