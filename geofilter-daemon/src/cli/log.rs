//! `geofilter log` and `geofilter top`: the sampled packet events, as they come or summed.

use std::io::Write as _;

use super::{
    args::{ClientArgs, LogArgs, TopArgs},
    client::{json_line, print},
};
use crate::{
    control::{
        client::{call, stream},
        protocol::{LogLine, LogRequest, Request, TopEntry, TopReply},
    },
    country::parse_user_codes,
    datapath::events::LoggedEvent,
};

pub fn log(args: &ClientArgs, log: &LogArgs) -> anyhow::Result<()> {
    let request = Request::Log(LogRequest {
        follow: log.follow,
        countries: parse_user_codes(&log.countries)?,
        passed: log.passed,
    });
    let mut out = std::io::stdout().lock();
    stream(&args.socket, &request, |line: LogLine| {
        let text = if args.json {
            format!("{}\n", json_line(&line))
        } else {
            match &line {
                LogLine::Started(s) => format!(
                    "# sampled: at most {} events/s per CPU (burst {}){}\n",
                    s.rate_per_cpu,
                    s.burst,
                    match (s.follow, s.history_always) {
                        (true, _) => "; following",
                        (false, true) => "",
                        (false, false) => {
                            "; recorded only while a `log --follow` client listens \
                             (run --event-history records always)"
                        }
                    }
                ),
                LogLine::Event(e) => event_text(e),
                LogLine::Lagged { missed } => format!("# {missed} events skipped: too slow\n"),
            }
        };
        // Followers are often piped into `head` or `grep -m`: a closed stdout ends the stream.
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    })?;
    Ok(())
}

/// `12:03:04.567 drop 5.45.200.7 RU udp/53 5.45.192.0/18`.
fn event_text(e: &LoggedEvent) -> String {
    let ms = e.unix_ms % 86_400_000;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let transport = match (e.protocol, e.port) {
        (6, Some(port)) => format!("tcp/{port}"),
        (17, Some(port)) => format!("udp/{port}"),
        (1, _) => "icmp".to_owned(),
        (58, _) => "icmpv6".to_owned(),
        (protocol, _) => format!("proto {protocol}"),
    };
    format!(
        "{h:02}:{m:02}:{s:02}.{milli:03}Z {:<10} {:<39} {} {transport:<9} {}\n",
        e.verdict,
        e.address,
        e.country,
        e.prefix.as_deref().unwrap_or("-")
    )
}

pub fn top(args: &ClientArgs, top: &TopArgs) -> anyhow::Result<()> {
    let v: TopReply = call(
        &args.socket,
        &Request::Top {
            window_s: top.window,
        },
    )?;
    print(args, &v, |v| {
        let mut s = format!(
            "{} sampled events in the last {} s (at most {} per second per CPU: counts rank \
             sources, they are not packet counts){}\n",
            v.events,
            v.window_s,
            v.rate_per_cpu,
            if v.history_always {
                ""
            } else {
                "; events are recorded only while a `log --follow` client listens"
            }
        );
        let table = |s: &mut String, title: &str, rows: &[TopEntry]| {
            s.push_str(&format!("\n{title:<44} {:<7} {:>8}\n", "country", "events"));
            for r in rows {
                s.push_str(&format!("{:<44} {:<7} {:>8}\n", r.key, r.country, r.events));
            }
        };
        table(&mut s, "prefix", &v.prefixes);
        table(&mut s, "country", &v.countries);
        s
    });
    Ok(())
}
