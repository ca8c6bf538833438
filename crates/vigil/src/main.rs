//! `vigil`: the one binary. Each subcommand parses its arguments and calls into the library
//! crates; no analysis logic lives here.
#![forbid(unsafe_code)]

mod logs_cmd;
mod progress;
mod replay_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "Vigil, the release guard: watches releases and pauses the ones that hurt."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay recorded releases through the analysis, step by step, and score them.
    Replay(replay_cmd::ReplayArgs),
    /// Mine the templates of log lines (a file or standard input) and print them with their
    /// counts, or the template id of each line.
    Logs(logs_cmd::LogsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay_cmd::run(args),
        Command::Logs(args) => logs_cmd::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
