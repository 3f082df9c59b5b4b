//! The `geofilter` command line: argument types and one function per verb.

pub mod args;
mod client;
mod db;
mod run;

use args::{Cli, Command, ExceptCommand, PolicyCommand, PortsCommand};

use crate::{control::protocol::Change, policy::Mode};

pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Status(args) => client::status(&args),
        Command::Stats(args) => client::stats(&args),
        Command::Block(args) => client::change(
            &args.change,
            Change::Block {
                countries: args.countries,
            },
        ),
        Command::Unblock(args) => client::change(
            &args.change,
            Change::Unblock {
                countries: args.countries,
            },
        ),
        Command::Policy(args) => match args.command {
            PolicyCommand::Deny(change) => {
                client::change(&change, Change::Mode { mode: Mode::Deny })
            }
            PolicyCommand::AllowOnly(change) => client::change(
                &change,
                Change::Mode {
                    mode: Mode::AllowOnly,
                },
            ),
            PolicyCommand::Unknown { action, change } => {
                client::change(&change, Change::Unknown { action })
            }
        },
        Command::Monitor(args) => client::change(
            &args.change,
            Change::Monitor {
                on: args.state == "on",
            },
        ),
        Command::Except(args) => match args.command {
            ExceptCommand::Add {
                cidrs,
                drop,
                change,
            } => client::change(&change, Change::ExceptAdd { cidrs, drop }),
            ExceptCommand::Del { cidrs, change } => {
                client::change(&change, Change::ExceptDel { cidrs })
            }
            ExceptCommand::List(args) => client::except_list(&args),
        },
        Command::Ports(args) => match args.command {
            PortsCommand::Set {
                only,
                exempt,
                change,
            } => client::change(&change, Change::PortsSet { only, exempt }),
            PortsCommand::Clear { change } => client::change(&change, Change::PortsClear {}),
        },
        Command::Confirm(args) => client::confirm(&args),
        Command::Why(args) => client::why(&args),
        Command::Unload(args) => client::unload(&args),
        Command::Db(args) => db::main(args.command),
    }
}
