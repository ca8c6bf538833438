//! `vigil`: the one binary. Each subcommand parses its arguments and calls into the library
//! crates; no analysis logic lives here.
#![forbid(unsafe_code)]

mod agent_cmd;
mod corpus;
mod demo;
mod gate_cmd;
mod history_cmd;
mod logging;
mod logs_cmd;
mod model_cmd;
mod progress;
mod replay_cmd;
mod serve_cmd;
mod token_cmd;
mod train_cmd;

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
    /// Run the live guard: the API, ingestion, the guard and notifications.
    Serve(serve_cmd::ServeArgs),
    /// See Vigil at work: the server on a temporary store, a simulated fleet of agents, a
    /// healthy release that completes and a faulty one that Vigil pauses.
    Demo(demo::DemoArgs),
    /// Replay recorded releases through the analysis, step by step, and score them: a corpus
    /// folder, or with --server the server's own stored releases.
    Replay(replay_cmd::ReplayArgs),
    /// Train the learned stage's model on labelled releases and cross-validate it.
    Train(train_cmd::TrainArgs),
    /// Mine the templates of log lines (a file or standard input) and print them with their
    /// counts, or the template id of each line.
    Logs(logs_cmd::LogsArgs),
    /// Manage API tokens.
    Token(token_cmd::TokenArgs),
    /// The learned stage's models: list, show, import, promote (through the promotion gate)
    /// and roll back.
    Model(model_cmd::ModelArgs),
    /// Wait for a release's outcome: exit 0 when it passed, 1 when it was stopped.
    #[command(after_help = gate_cmd::EXIT_CODES)]
    Gate(gate_cmd::GateArgs),
    /// The host agent: registers the host, runs its deploy and rollback steps, pushes its
    /// metrics and log events, fetches artifacts from its peers.
    Agent(agent_cmd::AgentArgs),
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let result = match cli.command {
        Command::Serve(args) => serve_cmd::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Logs(args) => logs_cmd::run(args),
        Command::Token(args) => token_cmd::run(args),
        Command::Model(args) => model_cmd::run(args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Gate(args) => match gate_cmd::run(args) {
            Ok(outcome) => return std::process::ExitCode::from(outcome.exit_code()),
            // It could not start (no token): a wrong invocation, not a stopped release.
            Err(error) => {
                print_error(&error);
                return std::process::ExitCode::from(USAGE_EXIT_CODE);
            }
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            print_error(&error);
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_error(error: &anyhow::Error) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("error: {error:#}");
    }
}

/// Exit code of a wrong invocation (the `EX_USAGE` of sysexits), apart from every command's
/// own codes (`vigil gate` uses 0 to 4).
const USAGE_EXIT_CODE: u8 = 64;

/// Prints the help or version asked for (exit 0), or what is wrong with the arguments.
fn usage_error(error: &clap::Error) -> std::process::ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        std::process::ExitCode::from(USAGE_EXIT_CODE)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Prints a line for the person at the terminal.
pub(crate) fn say(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}
