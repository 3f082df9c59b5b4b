//! The `geofilter` command line: argument types and one function per verb.

pub mod args;
mod client;
mod db;
mod docs;
pub mod list;
mod log;
mod parts;
mod run;

use args::{Cli, Command, ExceptCommand, PolicyCommand, PortsCommand};

use crate::{control::protocol::Change, keys::parse_user_keys, policy::Mode};

pub fn main(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    let client = global.client();
    match cli.command {
        Command::Run(mut args) => {
            global
                .refuse("run", false, true)
                .map_err(anyhow::Error::msg)?;
            args.socket = client.socket;
            run::run(args)
        }
        Command::Status => client::status(&client),
        Command::Stats(args) => client::stats(&client, &args),
        Command::Block(args) => {
            let keys = parse_user_keys(&args.countries)?;
            client::change(
                &client,
                &args.change,
                Change::Block {
                    countries: keys.countries,
                    asns: keys.asns,
                },
            )
        }
        Command::Unblock(args) => {
            let keys = parse_user_keys(&args.countries)?;
            client::change(
                &client,
                &args.change,
                Change::Unblock {
                    countries: keys.countries,
                    asns: keys.asns,
                },
            )
        }
        Command::Policy(args) => match args.command {
            PolicyCommand::Deny(change) => {
                client::change(&client, &change, Change::Mode { mode: Mode::Deny })
            }
            PolicyCommand::AllowOnly(change) => client::change(
                &client,
                &change,
                Change::Mode {
                    mode: Mode::AllowOnly,
                },
            ),
            PolicyCommand::Unknown { action, change } => {
                client::change(&client, &change, Change::Unknown { action })
            }
        },
        Command::Monitor(args) => client::change(
            &client,
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
            } => client::change(
                &client,
                &change,
                Change::ExceptAdd {
                    cidrs: client::parse_list(&cidrs)?,
                    drop,
                },
            ),
            ExceptCommand::Del { cidrs, change } => client::change(
                &client,
                &change,
                Change::ExceptDel {
                    cidrs: client::parse_list(&cidrs)?,
                },
            ),
            ExceptCommand::List => client::except_list(&client),
        },
        Command::Ports(args) => match args.command {
            PortsCommand::Set {
                only,
                exempt,
                change,
            } => client::change(
                &client,
                &change,
                Change::PortsSet {
                    only: client::parse_list(&only)?,
                    exempt: client::parse_list(&exempt)?,
                },
            ),
            PortsCommand::Clear { change } => {
                client::change(&client, &change, Change::PortsClear {})
            }
        },
        Command::Confirm => client::confirm(&client),
        Command::Why(args) => client::why(&client, &args),
        Command::Log(args) => log::log(&client, &args),
        Command::Top(args) => log::top(&client, &args),
        Command::Unload => client::unload(&client),
        Command::Db(args) => db::main(args.command, &global),
        // Served by the daemon once its handlers are in (issue 14); the types are in place.
        Command::List(command) => client::list(&client, command),
        Command::Completions(args) => {
            global
                .refuse("completions", true, true)
                .map_err(anyhow::Error::msg)?;
            docs::print_completions(args.shell)
        }
        Command::Manpages(args) => {
            global
                .refuse("manpages", true, true)
                .map_err(anyhow::Error::msg)?;
            for page in docs::manpages(&args.dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
    }
}
