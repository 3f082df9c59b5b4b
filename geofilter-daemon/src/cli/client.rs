//! The client verbs: thin calls over the control socket, printing a table or JSON.

use std::{net::IpAddr, str::FromStr};

use anyhow::Context as _;
use serde::Serialize;

use super::args::{ChangeArgs, ClientArgs, StatsArgs, WhyArgs};
use crate::{
    control::{
        client::{CallError, ConnectError, call},
        protocol::{
            Change, ChangeOptions, ConfirmReply, Exceptions, MAX_REQUEST_BYTES, MAX_WHY_ADDRESSES,
            Request, StatsReply, StatusReply, UnloadOutput, Unloaded, WhyAnswer, wire_name,
        },
    },
    country::code_str,
    paths,
    policy::DesiredPolicy,
};

/// Prints `value` as JSON or as text. JSON goes through `serde_json::Value`, whose objects sort
/// their keys: the output is the same whatever the order of the type's fields.
pub(super) fn print<T: Serialize>(args: &ClientArgs, value: &T, human: impl Fn(&T) -> String) {
    if args.json {
        println!("{}", json_line(value));
    } else {
        print!("{}", human(value));
    }
}

pub(super) fn json_line<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("replies serialize")
}

/// Items from the command line, parsed; the first bad one refuses them all, before anything is
/// sent.
pub(super) fn parse_list<T: FromStr<Err = String>>(items: &[String]) -> anyhow::Result<Vec<T>> {
    items
        .iter()
        .map(|i| i.parse().map_err(anyhow::Error::msg))
        .collect()
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The policy line `status` and the change verbs print.
fn policy_line(p: &DesiredPolicy) -> String {
    format!(
        "{} [{}], unknown {}, monitor {}\n",
        wire_name(&p.mode),
        join(p.countries.iter().map(|&c| code_str(c))),
        wire_name(&p.unknown),
        on_off(p.monitor),
    )
}

/// Exceptions in the order the text output has always listed them: by their text.
fn exception_rows(exceptions: &Exceptions) -> Vec<(String, String)> {
    let mut rows: Vec<_> = exceptions
        .iter()
        .map(|(cidr, action)| (cidr.to_string(), wire_name(action)))
        .collect();
    rows.sort();
    rows
}

fn status_text(v: &StatusReply) -> String {
    let mut s = String::new();
    for i in &v.interfaces {
        s += &format!("interface {} (xdp {})\n", i.name, wire_name(&i.xdp_mode));
        for p in &i.programs {
            let priority = p.priority.map_or("-".into(), |n| n.to_string());
            s += &format!(
                "  slot {} priority {priority:>3}  {:<15} id {:<6} {}\n",
                p.slot, p.name, p.id, p.owner
            );
        }
    }
    let db = &v.database;
    // No paths: the embedded database, whose source is named `embedded <name> <date>`.
    let from = match join(db.paths.iter().map(|p| p.display())) {
        paths if paths.is_empty() => db
            .sources
            .first()
            .map_or("?".into(), |s| s.path.display().to_string()),
        paths => paths,
    };
    s += &format!(
        "database: {} IPv4 + {} IPv6 prefixes, {} countries, from {from}\n",
        db.prefixes_v4, db.prefixes_v6, db.countries,
    );
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    s += &format!(
        "tables: {:.1} MiB IPv4 + {:.1} MiB IPv6 of kernel memory\n",
        mib(db.table_bytes_v4),
        mib(db.table_bytes_v6),
    );
    let p = &v.policy;
    s += &format!("policy: {}", policy_line(p));
    for (cidr, action) in exception_rows(&p.exceptions) {
        s += &format!("exception: {cidr} {action}\n");
    }
    let (only, exempt) = (join(&p.ports.only), join(&p.ports.exempt));
    if only.is_empty() && exempt.is_empty() {
        s += "ports: all\n";
    } else {
        s += &format!("ports: only [{only}] exempt [{exempt}]\n");
    }
    if let Some(secs) = v.pending_confirm_s {
        s += &format!("a change rolls back in {secs} s unless confirmed\n");
    }
    if let Some(f) = &v.policy_source {
        s += &policy_source_text(f);
    }
    s += &format!("uptime: {} s\n", v.uptime_s);
    s
}

/// The followed source's lines of `status`: what is enforced, and when the source last
/// answered. Times as ages, which is what an operator compares across hosts.
fn policy_source_text(f: &crate::control::protocol::PolicySourceStatus) -> String {
    let now = crate::fleet::unix_now();
    let ago = |t: Option<u64>| {
        t.map_or("never".into(), |t| {
            format!("{} s ago", now.saturating_sub(t))
        })
    };
    let revision = f
        .revision
        .as_deref()
        .map_or("none", |r| &r[..r.len().min(12)]);
    let mut s = format!(
        "policy source: {} ({})\n  revision {revision}{} applied {}; last check {}, last answer {}\n",
        f.source,
        if f.ready { "ready" } else { "NOT READY" },
        f.etag
            .as_deref()
            .map_or(String::new(), |e| format!(" etag {e}")),
        ago(f.applied_at),
        ago(f.last_check),
        ago(f.last_success),
    );
    if let Some(e) = &f.last_error {
        s += &format!("  last error ({} in all): {e}\n", f.errors);
    }
    s
}

pub fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let v: StatusReply = call(&args.socket, &Request::Status {})?;
    print(args, &v, status_text);
    Ok(())
}

fn stats_table(v: &StatsReply, previous: Option<(&StatsReply, f64)>) -> String {
    use geofilter_common::Verdict;
    let rate = |country: &str, verdict: Verdict| -> String {
        match previous {
            Some((prev, secs)) if secs > 0.0 => {
                let now = v.count(country, verdict).packets;
                let delta = now.saturating_sub(prev.count(country, verdict).packets);
                format!("{:.0}/s", delta as f64 / secs)
            }
            _ => String::new(),
        }
    };
    let with_rates = previous.is_some();
    let mut s = format!(
        "{:<8} {:>12} {:>12} {:>12} {:>14}",
        "country", "passed", "dropped", "would-drop", "dropped bytes"
    );
    if with_rates {
        s += &format!(" {:>10} {:>10}", "passed/s", "dropped/s");
    }
    s.push('\n');
    for c in &v.countries {
        s += &format!(
            "{:<8} {:>12} {:>12} {:>12} {:>14}",
            c.country, c.pass.packets, c.drop.packets, c.would_drop.packets, c.drop.bytes,
        );
        if with_rates {
            s += &format!(
                " {:>10} {:>10}",
                rate(&c.country, Verdict::Pass),
                rate(&c.country, Verdict::Drop)
            );
        }
        s.push('\n');
    }
    for (title, rows) in [("asn", &v.asns), ("list", &v.lists)] {
        if rows.is_empty() {
            continue;
        }
        s += &format!(
            "{:<24} {:>12} {:>12} {:>12} {:>14}\n",
            title, "passed", "dropped", "would-drop", "dropped bytes"
        );
        for c in rows {
            s += &format!(
                "{:<24} {:>12} {:>12} {:>12} {:>14}\n",
                c.name, c.pass.packets, c.drop.packets, c.would_drop.packets, c.drop.bytes,
            );
        }
    }
    for (name, c) in &v.classes {
        s += &format!("class {name}: {} packets\n", c.packets);
    }
    s
}

pub fn stats(client: &ClientArgs, args: &StatsArgs) -> anyhow::Result<()> {
    let socket = &client.socket;
    if !args.watch {
        let v: StatsReply = call(socket, &Request::Stats {})?;
        print(client, &v, |v| stats_table(v, None));
        return Ok(());
    }
    let mut previous: Option<(StatsReply, std::time::Instant)> = None;
    loop {
        let v: StatsReply = call(socket, &Request::Stats {})?;
        let now = std::time::Instant::now();
        if client.json {
            println!("{}", json_line(&v));
        } else {
            let prev = previous
                .as_ref()
                .map(|(p, t)| (p, now.duration_since(*t).as_secs_f64()));
            // Clear the screen and home the cursor, then draw.
            print!("\x1b[2J\x1b[H{}", stats_table(&v, prev));
        }
        previous = Some((v, now));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The address of the SSH session this command runs in, for the daemon's lockout check; an
/// address that is not one refuses the command (the check could not protect the session).
pub(super) fn caller() -> anyhow::Result<Option<IpAddr>> {
    // SSH_CONNECTION: "client_ip client_port server_ip server_port"; SSH_CLIENT: "ip port port".
    ["SSH_CONNECTION", "SSH_CLIENT"]
        .iter()
        .find_map(|var| std::env::var(var).ok())
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .map(|c| {
            c.parse()
                .map_err(|_| anyhow::anyhow!("caller address {c:?} is not an IP address"))
        })
        .transpose()
}

/// Sends one policy change with the lockout and commit-confirm options; an exception list too
/// long for one request goes in parts (see [`super::parts`]), each applied atomically.
pub fn change(client: &ClientArgs, args: &ChangeArgs, change: Change) -> anyhow::Result<()> {
    let opts = ChangeOptions {
        caller: caller()?,
        force: args.force,
        confirm_s: args.confirm,
    };
    let requests = super::parts::split(change, &opts);
    let n = requests.len();
    if n > 1 && args.confirm.is_some() {
        // One change at a time may wait for `confirm`; parts 2.. would be refused.
        anyhow::bail!(
            "--confirm covers one request, and this list needs {n} (a request holds at most \
             {MAX_REQUEST_BYTES} bytes): send it without --confirm, or in shorter lists; nothing \
             was changed"
        );
    }
    let mut policy = None;
    for (i, request) in requests.iter().enumerate() {
        let reply: DesiredPolicy = call(&client.socket, request).map_err(|e| match i {
            0 => anyhow::Error::new(e),
            _ => anyhow::Error::new(e).context(format!(
                "part {} of {n} refused: the {i} before it were applied and stay, the rest was \
                 not sent",
                i + 1
            )),
        })?;
        policy = Some(reply);
    }
    if n > 1 {
        eprintln!("geofilter: sent in {n} parts, each applied atomically on its own");
    }
    let policy = policy.expect("a change is at least one request");
    print(client, &policy, |p| {
        let mut s = format!("policy {}", policy_line(p));
        if let Some(secs) = args.confirm {
            s += &format!("rolls back in {secs} s unless `geofilter confirm` follows\n");
        }
        s
    });
    Ok(())
}

pub fn confirm(args: &ClientArgs) -> anyhow::Result<()> {
    let v: ConfirmReply = call(&args.socket, &Request::Confirm {})?;
    print(args, &v, |_| "confirmed\n".to_owned());
    Ok(())
}

pub fn except_list(args: &ClientArgs) -> anyhow::Result<()> {
    let v: Exceptions = call(&args.socket, &Request::ExceptList {})?;
    print(args, &v, |v| {
        exception_rows(v)
            .into_iter()
            .map(|(cidr, action)| format!("{cidr:<44} {action}\n"))
            .collect()
    });
    Ok(())
}

/// Asks a running daemon to unload; with no daemon (no socket, or nobody listening on it: one
/// that was killed), removes the pinned state directly, which detaches the filter: pinned links
/// are the only thing keeping it attached. A daemon that is there but cannot be reached
/// (permission denied, a timeout) is an error: "nothing to unload" would be false.
pub fn unload(args: &ClientArgs) -> anyhow::Result<()> {
    let root = crate::datapath::bpffs::locate(&paths::pin_root());
    let how = match call::<serde::de::IgnoredAny>(&args.socket, &Request::Unload {}) {
        Ok(_) => {
            // The daemon detaches and unpins before exiting; wait (at most 5 s) for its pins to go,
            // and remove what is left if they do not.
            let mut left = true;
            for _ in 0..100 {
                left = pins_present(&root)?;
                if !left {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            if left {
                remove_pins(&root)?;
            }
            Unloaded::Daemon
        }
        Err(CallError::Connect(ConnectError::NoDaemon { .. })) => {
            if pins_present(&root)? {
                remove_pins(&root)?;
                Unloaded::Pins
            } else {
                Unloaded::Nothing
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context("nothing unloaded")),
    };
    let text = match how {
        Unloaded::Daemon => "unloaded".to_owned(),
        Unloaded::Pins => format!(
            "no daemon running; removed pinned state at {}",
            root.display()
        ),
        Unloaded::Nothing => "nothing to unload".to_owned(),
    };
    let out = UnloadOutput {
        unloaded: how,
        pin_root: root,
    };
    print(args, &out, |_| format!("{text}\n"));
    Ok(())
}

/// Whether the pin root exists; not being allowed to look is an error, not "no".
fn pins_present(root: &std::path::Path) -> anyhow::Result<bool> {
    root.try_exists()
        .with_context(|| format!("cannot check {} (run as root)", root.display()))
}

/// Removes the pin root, which detaches geofilter where it holds its own links; where it holds
/// libxdp dispatcher slots (held by libxdp's pins), first takes it out of each dispatcher, the
/// other programs staying.
fn remove_pins(root: &std::path::Path) -> anyhow::Result<()> {
    let dispatched = paths::PinLayout::new(root.to_path_buf()).dispatched();
    for entry in std::fs::read_dir(&dispatched)
        .into_iter()
        .flatten()
        .flatten()
    {
        let iface = entry.file_name().to_string_lossy().into_owned();
        crate::datapath::dispatcher::leave(&iface)
            .with_context(|| format!("taking geofilter out of {iface}'s dispatcher"))?;
    }
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))
}

/// Addresses from the arguments, `-` expanding to standard input; a bad one is an error naming
/// where it came from.
fn why_addresses(args: &WhyArgs) -> anyhow::Result<Vec<IpAddr>> {
    use std::io::BufRead as _;
    let mut out = Vec::new();
    for arg in &args.addresses {
        if arg == "-" {
            for (n, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.context("reading standard input")?;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(line.parse().map_err(|_| {
                    anyhow::anyhow!("stdin line {}: not an IP address: {line:?}", n + 1)
                })?);
            }
        } else {
            out.push(
                arg.parse()
                    .map_err(|_| anyhow::anyhow!("not an IP address: {arg:?}"))?,
            );
        }
    }
    Ok(out)
}

pub fn why(client: &ClientArgs, args: &WhyArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let addresses = why_addresses(args)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for chunk in addresses.chunks(MAX_WHY_ADDRESSES) {
        let answers: Vec<WhyAnswer> = call(
            &client.socket,
            &Request::Why {
                addresses: chunk.to_vec(),
            },
        )?;
        for a in &answers {
            if client.json {
                writeln!(stdout, "{}", json_line(a))?;
            } else {
                writeln!(
                    stdout,
                    "{:<40} {:<7} {:<5} {}",
                    a.address.to_string(),
                    a.country.as_deref().unwrap_or("unknown"),
                    wire_name(&a.verdict),
                    a.reason
                )?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

/// `geofilter list ...`: one request, its reply as text or JSON.
pub fn list(client: &ClientArgs, command: super::list::ListCommand) -> anyhow::Result<()> {
    use super::list::{ListCommand, rows_text, update_text};
    use crate::control::protocol::{ListRows, ListUpdateReply};
    let socket = &client.socket;
    let rows = |request: &Request| -> anyhow::Result<()> {
        let v: ListRows = call(socket, request)?;
        print(client, &v, rows_text);
        Ok(())
    };
    match command {
        ListCommand::Add { force, .. } => {
            let spec = command.spec().expect("an add has a spec");
            rows(&Request::ListAdd {
                spec,
                caller: caller()?,
                force,
            })
        }
        ListCommand::Del { name } => rows(&Request::ListDel { name }),
        ListCommand::Enable { name, force } => rows(&Request::ListEnable {
            name,
            on: true,
            caller: caller()?,
            force,
        }),
        ListCommand::Disable { name } => rows(&Request::ListEnable {
            name,
            on: false,
            caller: None,
            force: false,
        }),
        ListCommand::Update { name } => {
            let v: ListUpdateReply = call(socket, &Request::ListUpdate { name })?;
            print(client, &v, update_text);
            if v.failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} list(s) kept their last good copy", v.failed.len())
            }
        }
        ListCommand::Show => rows(&Request::ListShow {}),
    }
}
