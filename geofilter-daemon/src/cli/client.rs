//! The client verbs: thin calls over the control socket, printing a table or JSON.

use anyhow::Context as _;
use serde_json::Value;

use super::args::{ClientArgs, CountriesArgs, SocketArgs, WhyArgs};
use crate::{
    control::{
        client::call,
        protocol::{MAX_WHY_ADDRESSES, Request},
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
    let v = call(&args.socket.socket, &Request::Status)?;
    print(args, &v, |v| {
        let mut s = String::new();
        for i in v["interfaces"].as_array().into_iter().flatten() {
            s += &format!(
                "interface {} (xdp {})\n",
                i["name"].as_str().unwrap_or("?"),
                i["xdp_mode"].as_str().unwrap_or("?")
            );
        }
        let db = &v["database"];
        s += &format!(
            "database: {} IPv4 + {} IPv6 prefixes, {} countries\n",
            db["prefixes_v4"], db["prefixes_v6"], db["countries"]
        );
        let p = &v["policy"];
        let countries: Vec<&str> = p["countries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        s += &format!(
            "policy: {} [{}], unknown {}, monitor {}\n",
            p["mode"].as_str().unwrap_or("?"),
            countries.join(","),
            p["unknown"].as_str().unwrap_or("?"),
            p["monitor"]
        );
        s += &format!("uptime: {} s\n", v["uptime_s"]);
        s
    });
    Ok(())
}

pub fn stats(args: &ClientArgs) -> anyhow::Result<()> {
    let v = call(&args.socket.socket, &Request::Stats)?;
    print(args, &v, |v| {
        let mut s = format!(
            "{:<8} {:>12} {:>12} {:>12} {:>14}\n",
            "country", "passed", "dropped", "would-drop", "dropped bytes"
        );
        for c in v["countries"].as_array().into_iter().flatten() {
            s += &format!(
                "{:<8} {:>12} {:>12} {:>12} {:>14}\n",
                c["country"].as_str().unwrap_or("?"),
                c["pass"]["packets"],
                c["drop"]["packets"],
                c["would_drop"]["packets"],
                c["drop"]["bytes"]
            );
        }
        for (name, c) in v["classes"].as_object().into_iter().flatten() {
            s += &format!("class {name}: {} packets\n", c["packets"]);
        }
        s
    });
    Ok(())
}

pub fn change_countries(args: &CountriesArgs, block: bool) -> anyhow::Result<()> {
    let countries = args.countries.clone();
    let request = if block {
        Request::Block { countries }
    } else {
        Request::Unblock { countries }
    };
    let v = call(&args.client.socket.socket, &request)?;
    print(&args.client, &v, |v| {
        let list: Vec<&str> = v["countries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        format!(
            "{} countries now: {}\n",
            v["mode"].as_str().unwrap_or("?"),
            list.join(",")
        )
    });
    Ok(())
}

/// Asks a running daemon to unload; with no daemon, removes the pinned state directly (which
/// detaches the filter: pinned links are the only thing keeping it attached).
pub fn unload(args: &SocketArgs) -> anyhow::Result<()> {
    if args.socket.exists() && call(&args.socket, &Request::Unload).is_ok() {
        // The daemon detaches and unpins before exiting; wait for its pins to go.
        let root = paths::pin_root();
        for _ in 0..100 {
            if !root.exists() {
                println!("unloaded");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let root = paths::pin_root();
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        println!("removed pinned state at {}", root.display());
    } else {
        println!("nothing to unload");
    }
    Ok(())
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

pub fn why(args: &WhyArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let addresses = why_addresses(args)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for chunk in addresses.chunks(MAX_WHY_ADDRESSES) {
        let answers = call(
            &args.client.socket.socket,
            &Request::Why {
                addresses: chunk.to_vec(),
            },
        )?;
        for a in answers.as_array().into_iter().flatten() {
            if args.client.json {
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
