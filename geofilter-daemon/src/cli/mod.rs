//! The `geofilter` command line: argument types and one function per verb.

pub mod args;
mod client;
mod run;

use args::{Cli, Command};

pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Status(args) => client::status(&args),
        Command::Stats(args) => client::stats(&args),
        Command::Block(args) => client::change_countries(&args, true),
        Command::Unblock(args) => client::change_countries(&args, false),
        Command::Why(args) => client::why(&args),
        Command::Unload(args) => client::unload(&args),
    }
}
