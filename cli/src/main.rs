//! `fnctl`: the Lamina command-line tool.
//!
//! Exit status: 0 success, 1 any error (usage, API, transport), 2 the invoked function returned an
//! error. Errors are printed to stderr as `error: <message>`.
mod args;
mod attach_wait;
mod auth;
mod commands;
mod concurrency;
mod events;
mod gateway;
mod images;
#[cfg(test)]
mod json_casing;
mod layers;
mod network;
mod output;
mod permission;
mod role;
mod stream;
mod terminal;
mod up;
mod versions;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

/// How a command that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `fnctl invoke`: the function ran and returned an error (`Handled` or `Unhandled`).
    FunctionError(String),
}

/// Exit status of a finished command.
pub fn exit_code(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::FunctionError(_)) => 2,
        Err(_) => 1,
    }
}

/// The error and its causes, each cause added only when the message does not already contain it.
fn error_message(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let s = cause.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Up(args) => up::up(&args).await,
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fnctl", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
        command => {
            let conn = commands::Conn {
                ca: commands::resolve_ca(cli.ca, cli.credentials.as_deref()),
                endpoint: cli.endpoint,
                credentials: commands::resolve_credentials(cli.credentials.as_deref())?,
            };
            commands::run(&conn, cli.output, command).await
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1, so that 2 always means "the function returned an error".
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Single-threaded on purpose: `fnctl up` must spawn its children from a thread that lives as
    // long as fnctl (PR_SET_PDEATHSIG is tied to the forking thread).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    match &result {
        Err(e) => eprintln!("error: {}", error_message(e)),
        Ok(Outcome::FunctionError(kind)) => eprintln!("function error: {kind}"),
        Ok(Outcome::Success) => {}
    }
    ExitCode::from(exit_code(&result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Ok(Outcome::Success)), 0);
        assert_eq!(exit_code(&Ok(Outcome::FunctionError("Handled".into()))), 2);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("boom"))), 1);
        let api: anyhow::Error =
            lamina_client::Error::Api(lamina_client::Status::not_found("function `x` not found"))
                .into();
        assert_eq!(error_message(&api), "function `x` not found");
        assert_eq!(exit_code(&Err(api)), 1);
    }

    #[test]
    fn error_message_does_not_repeat_causes() {
        let e = anyhow::Error::from(std::io::Error::other("disk gone")).context("cannot save");
        assert_eq!(error_message(&e), "cannot save: disk gone");
        let inner = anyhow::anyhow!("function `x` not found");
        assert_eq!(error_message(&inner), "function `x` not found");
    }
}
