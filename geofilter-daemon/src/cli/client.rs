//! The client verbs: thin calls over the control socket, printing a table or JSON.

use anyhow::Context as _;
use serde_json::Value;

use super::args::{ClientArgs, CountriesArgs, SocketArgs};
use crate::{
    control::{client::call, protocol::Request},
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
