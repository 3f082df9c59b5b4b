//! The running daemon: the loaded datapath, the database it was filled from, the operator's
//! policy, and the request handlers the control socket calls.

use std::{collections::BTreeSet, net::IpAddr, path::PathBuf, sync::Mutex, time::Instant};

use geofilter_common::{CountryId, PacketClass, Verdict};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{
    control::{
        protocol::{MAX_WHY_ADDRESSES, Request, Response},
        server::Handler,
    },
    datapath::{Attachment, Counters, Datapath},
    geoip::{
        CompiledDb,
        country::{code_str, parse_country},
    },
    paths::PinLayout,
    policy::DesiredPolicy,
    why,
};

/// Everything a request may read or change; one lock, so requests apply one at a time.
pub struct State {
    pub datapath: Datapath,
    pub db: CompiledDb,
    pub db_paths: Vec<PathBuf>,
    pub policy: DesiredPolicy,
    pub attachments: Vec<Attachment>,
    pub layout: PinLayout,
}

pub struct Daemon {
    state: Mutex<State>,
    started: Instant,
    /// Signalled by an `unload` request.
    pub shutdown: Notify,
}

/// Parses user-given country codes; all must be valid or nothing is applied.
pub fn parse_countries(codes: &[String]) -> Result<BTreeSet<CountryId>, String> {
    codes
        .iter()
        .map(|c| parse_country(c).map_err(|e| e.to_string()))
        .collect()
}

impl Daemon {
    pub fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            started: Instant::now(),
            shutdown: Notify::new(),
        }
    }

    /// Gives the state back for shutdown.
    pub fn into_state(self) -> State {
        self.state.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the last applied state, which is still coherent:
        // every change is applied to the kernel before it is recorded here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> Value {
        let state = self.lock();
        json!({
            "interfaces": state.attachments.iter().map(|a| json!({"name": a.iface, "xdp_mode": a.mode})).collect::<Vec<_>>(),
            "database": {
                "paths": state.db_paths,
                "sources": state.db.sources,
                "prefixes_v4": state.db.v4.len(),
                "prefixes_v6": state.db.v6.len(),
                "countries": state.db.countries().len(),
            },
            "policy": policy_json(&state.policy),
            "pin_root": state.layout.root,
            "uptime_s": self.started.elapsed().as_secs(),
        })
    }

    fn change_countries(&self, codes: &[String], block: bool) -> Result<Value, String> {
        let countries = parse_countries(codes)?;
        let mut state = self.lock();
        let mut next = state.policy.clone();
        for c in countries {
            if block {
                next.countries.insert(c);
            } else {
                next.countries.remove(&c);
            }
        }
        // In the kernel first: when this returns, every new packet sees the new policy.
        state
            .datapath
            .set_policy(&next.compile())
            .map_err(|e| e.to_string())?;
        state.policy = next;
        Ok(policy_json(&state.policy))
    }

    fn why(&self, addresses: &[String]) -> Result<Value, String> {
        if addresses.len() > MAX_WHY_ADDRESSES {
            return Err(format!("at most {MAX_WHY_ADDRESSES} addresses per request"));
        }
        let state = self.lock();
        let answers = addresses
            .iter()
            .map(|text| match text.trim().parse::<IpAddr>() {
                Err(_) => {
                    Ok(json!({"address": text, "error": format!("not an IP address: {text:?}")}))
                }
                Ok(addr) => {
                    let found = state.datapath.classify(addr).map_err(|e| e.to_string())?;
                    Ok(why::explain(
                        addr,
                        &found,
                        &state.db,
                        &state.db_paths,
                        &state.policy,
                    ))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Value::Array(answers))
    }

    fn stats(&self) -> Result<Value, String> {
        let counters = self.lock().datapath.counters().map_err(|e| e.to_string())?;
        Ok(counters_json(&counters))
    }
}

pub fn policy_json(policy: &DesiredPolicy) -> Value {
    json!({
        "mode": policy.mode,
        "countries": policy.countries.iter().map(|&c| code_str(c)).collect::<Vec<_>>(),
        "unknown": policy.unknown,
        "monitor": policy.monitor,
    })
}

pub fn counters_json(counters: &Counters) -> Value {
    let counter = |c: &geofilter_common::Counter| json!({"packets": c.packets, "bytes": c.bytes});
    let countries: Vec<Value> = counters
        .countries
        .iter()
        .map(|(&id, row)| {
            let mut entry = json!({"country": if id == geofilter_common::UNKNOWN_COUNTRY { "unknown".to_owned() } else { code_str(id) }});
            for verdict in Verdict::ALL {
                entry[verdict.name()] = counter(&row[verdict as usize]);
            }
            entry
        })
        .collect();
    let mut classes = json!({});
    for class in PacketClass::ALL {
        classes[class.name()] = counter(&counters.classes[class as usize]);
    }
    json!({"countries": countries, "classes": classes})
}

impl Handler for Daemon {
    async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Status => Ok(self.status()),
            Request::Stats => self.stats(),
            Request::Block { countries } => self.change_countries(&countries, true),
            Request::Unblock { countries } => self.change_countries(&countries, false),
            Request::Why { addresses } => self.why(&addresses),
            Request::Unload => {
                self.shutdown.notify_one();
                Ok(json!({"unloading": true}))
            }
        };
        match result {
            Ok(v) => Response::ok(v),
            Err(e) => Response::error(e),
        }
    }
}
