//! The client verbs: thin calls over the control socket, printing a table or JSON.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::args::{ChangeArgs, ClientArgs, StatsArgs, WhyArgs};
use crate::{
    control::{
        client::{ConnectError, call},
        protocol::{Change, ChangeOptions, MAX_REQUEST_BYTES, MAX_WHY_ADDRESSES, Request},
    },
    paths,
};

fn print(args: &ClientArgs, value: &Value, human: impl Fn(&Value) -> String) {
    if args.json {
        println!("{value}");
    } else {
        print!("{}", human(value));
    }
}

pub fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let v = call(&args.socket, &Request::Status {})?;
    print(args, &v, |v| {
        let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
        let join = |v: &Value| {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut s = String::new();
        for i in v["interfaces"].as_array().into_iter().flatten() {
            s += &format!(
                "interface {} (xdp {})\n",
                text(&i["name"]),
                text(&i["xdp_mode"])
            );
        }
        let db = &v["database"];
        // No paths: the embedded database, whose source is named `embedded <name> <date>`.
        let from = match join(&db["paths"]) {
            paths if paths.is_empty() => db["sources"][0]["path"].as_str().unwrap_or("?").into(),
            paths => paths,
        };
        s += &format!(
            "database: {} IPv4 + {} IPv6 prefixes, {} countries, from {from}\n",
            db["prefixes_v4"], db["prefixes_v6"], db["countries"],
        );
        let p = &v["policy"];
        s += &format!(
            "policy: {} [{}], unknown {}, monitor {}\n",
            text(&p["mode"]),
            join(&p["countries"]),
            text(&p["unknown"]),
            if p["monitor"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
        );
        for (cidr, action) in p["exceptions"].as_object().into_iter().flatten() {
            s += &format!("exception: {cidr} {}\n", text(action));
        }
        let (only, exempt) = (join(&p["ports"]["only"]), join(&p["ports"]["exempt"]));
        if only.is_empty() && exempt.is_empty() {
            s += "ports: all\n";
        } else {
            s += &format!("ports: only [{only}] exempt [{exempt}]\n");
        }
        if let Some(secs) = v["pending_confirm_s"].as_u64() {
            s += &format!("a change rolls back in {secs} s unless confirmed\n");
        }
        s += &format!("uptime: {} s\n", v["uptime_s"]);
        s
    });
    Ok(())
}

fn stats_table(v: &Value, previous: Option<(&Value, f64)>) -> String {
    let packets = |c: &Value, verdict: &str| c[verdict]["packets"].as_u64().unwrap_or(0);
    let earlier = |country: &str, verdict: &str| -> Option<u64> {
        let (prev, _) = previous?;
        let row = prev["countries"]
            .as_array()?
            .iter()
            .find(|c| c["country"] == country)?;
        Some(packets(row, verdict))
    };
    let rate = |c: &Value, verdict: &str| -> String {
        match previous {
            Some((_, secs)) if secs > 0.0 => {
                let country = c["country"].as_str().unwrap_or("");
                let delta =
                    packets(c, verdict).saturating_sub(earlier(country, verdict).unwrap_or(0));
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
    for c in v["countries"].as_array().into_iter().flatten() {
        s += &format!(
            "{:<8} {:>12} {:>12} {:>12} {:>14}",
            c["country"].as_str().unwrap_or("?"),
            packets(c, "pass"),
            packets(c, "drop"),
            packets(c, "would_drop"),
            c["drop"]["bytes"].as_u64().unwrap_or(0),
        );
        if with_rates {
            s += &format!(" {:>10} {:>10}", rate(c, "pass"), rate(c, "drop"));
        }
        s.push('\n');
    }
    for (name, c) in v["classes"].as_object().into_iter().flatten() {
        s += &format!("class {name}: {} packets\n", c["packets"]);
    }
    s
}

pub fn stats(client: &ClientArgs, args: &StatsArgs) -> anyhow::Result<()> {
    let socket = &client.socket;
    if !args.watch {
        let v = call(socket, &Request::Stats {})?;
        print(client, &v, |v| stats_table(v, None));
        return Ok(());
    }
    let mut previous: Option<(Value, std::time::Instant)> = None;
    loop {
        let v = call(socket, &Request::Stats {})?;
        let now = std::time::Instant::now();
        if client.json {
            println!("{v}");
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

/// The address of the SSH session this command runs in, for the daemon's lockout check.
pub(super) fn caller() -> Option<String> {
    // SSH_CONNECTION: "client_ip client_port server_ip server_port"; SSH_CLIENT: "ip port port".
    ["SSH_CONNECTION", "SSH_CLIENT"]
        .iter()
        .find_map(|var| std::env::var(var).ok())
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
}

/// Sends one policy change with the lockout and commit-confirm options; an exception list too
/// long for one request goes in parts (see [`super::parts`]), each applied atomically.
pub fn change(client: &ClientArgs, args: &ChangeArgs, change: Change) -> anyhow::Result<()> {
    let opts = ChangeOptions {
        caller: caller(),
        force: args.force,
        confirm_s: args.confirm,
    };
    let requests = super::parts::split(change, &opts).map_err(anyhow::Error::msg)?;
    let n = requests.len();
    if n > 1 && args.confirm.is_some() {
        // One change at a time may wait for `confirm`; parts 2.. would be refused.
        anyhow::bail!(
            "--confirm covers one request, and this list needs {n} (a request holds at most \
             {MAX_REQUEST_BYTES} bytes): send it without --confirm, or in shorter lists; nothing \
             was changed"
        );
    }
    let mut v = Value::Null;
    for (i, request) in requests.iter().enumerate() {
        v = call(&client.socket, request).map_err(|e| match i {
            0 => e,
            _ => e.context(format!(
                "part {} of {n} refused: the {i} before it were applied and stay, the rest was \
                 not sent",
                i + 1
            )),
        })?;
    }
    if n > 1 {
        eprintln!("geofilter: sent in {n} parts, each applied atomically on its own");
    }
    print(client, &v, |v| {
        let list = |key: &str| -> String {
            v[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut s = format!(
            "policy {} [{}], unknown {}, monitor {}\n",
            v["mode"].as_str().unwrap_or("?"),
            list("countries"),
            v["unknown"].as_str().unwrap_or("?"),
            if v["monitor"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
        );
        if let Some(secs) = args.confirm {
            s += &format!("rolls back in {secs} s unless `geofilter confirm` follows\n");
        }
        s
    });
    Ok(())
}

pub fn confirm(args: &ClientArgs) -> anyhow::Result<()> {
    let v = call(&args.socket, &Request::Confirm {})?;
    print(args, &v, |_| "confirmed\n".to_owned());
    Ok(())
}

pub fn except_list(args: &ClientArgs) -> anyhow::Result<()> {
    let v = call(&args.socket, &Request::ExceptList {})?;
    print(args, &v, |v| {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(cidr, action)| format!("{cidr:<44} {}\n", action.as_str().unwrap_or("?")))
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
    let how = match call(&args.socket, &Request::Unload {}) {
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
            "daemon"
        }
        Err(e) if matches!(e.downcast_ref(), Some(ConnectError::NoDaemon { .. })) => {
            if pins_present(&root)? {
                remove_pins(&root)?;
                "pins"
            } else {
                "nothing"
            }
        }
        Err(e) => return Err(e.context("nothing unloaded")),
    };
    let text = match how {
        "daemon" => "unloaded".to_owned(),
        "pins" => format!(
            "no daemon running; removed pinned state at {}",
            root.display()
        ),
        _ => "nothing to unload".to_owned(),
    };
    print(args, &json!({"unloaded": how, "pin_root": root}), |_| {
        format!("{text}\n")
    });
    Ok(())
}

/// Whether the pin root exists; not being allowed to look is an error, not "no".
fn pins_present(root: &std::path::Path) -> anyhow::Result<bool> {
    root.try_exists()
        .with_context(|| format!("cannot check {} (run as root)", root.display()))
}

fn remove_pins(root: &std::path::Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))
}

/// Addresses from the arguments, `-` expanding to standard input; a bad one is an error naming
/// where it came from.
fn why_addresses(args: &WhyArgs) -> anyhow::Result<Vec<String>> {
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
                line.parse::<std::net::IpAddr>().map_err(|_| {
                    anyhow::anyhow!("stdin line {}: not an IP address: {line:?}", n + 1)
                })?;
                out.push(line.to_owned());
            }
        } else {
            arg.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow::anyhow!("not an IP address: {arg:?}"))?;
            out.push(arg.clone());
        }
    }
    Ok(out)
}

pub fn why(client: &ClientArgs, args: &WhyArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let addresses = why_addresses(args)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for chunk in addresses.chunks(MAX_WHY_ADDRESSES) {
        let answers = call(
            &client.socket,
            &Request::Why {
                addresses: chunk.to_vec(),
            },
        )?;
        for a in answers.as_array().into_iter().flatten() {
            if client.json {
                writeln!(stdout, "{a}")?;
            } else {
                writeln!(
                    stdout,
                    "{:<40} {:<7} {:<5} {}",
                    a["address"].as_str().unwrap_or("?"),
                    a["country"].as_str().unwrap_or("unknown"),
                    a["verdict"].as_str().unwrap_or("?"),
                    a["reason"].as_str().unwrap_or_default()
                )?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}
