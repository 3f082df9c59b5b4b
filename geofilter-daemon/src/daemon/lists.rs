//! `geofilter list` in the daemon: the registry's verbs, with the kernel kept in step.
//!
//! Each list has a stable *slot* (a bit of every net's list mask), kept in the state file, so a
//! change never moves another list's bit. The order of the kernel steps keeps every packet on a
//! whole state: `add` builds tables with the new list's bit (no policy enables it yet), then
//! swaps the policy that enables it; `del` first swaps a policy without it, then builds tables
//! without its bit; `update` swaps tables only (same slot, same policy); `enable`/`disable` swap
//! the policy only, which is O(1) in the size of every database and list.

use std::{collections::BTreeMap, net::IpAddr};

use geofilter_common::table::LIST_SLOTS;

use super::Daemon;
use crate::{
    commit::{self, State},
    control::protocol::{ControlError, ListRows, ListSpec, ListUpdateReply, Reply},
    datapath::ListMasks,
    lists::{ListAction, Lists},
    nets::ListRanges,
    policy,
};

/// The slot of each list (`state.list_slots`), and a new one for `name` if it has none.
fn slot_for(slots: &mut BTreeMap<String, u32>, name: &str) -> Result<u32, ControlError> {
    if let Some(&s) = slots.get(name) {
        return Ok(s);
    }
    let free = (0..LIST_SLOTS)
        .find(|s| !slots.values().any(|v| v == s))
        .ok_or_else(|| ControlError::Refused(format!("at most {LIST_SLOTS} lists")))?;
    slots.insert(name.to_owned(), free);
    Ok(free)
}

/// The ranges of every list with addresses, by slot, for the tables.
pub fn ranges<'a>(lists: &'a Lists, slots: &BTreeMap<String, u32>) -> Vec<ListRanges<'a>> {
    slots
        .iter()
        .filter_map(|(name, &slot)| {
            let p = lists.prefixes(name)?;
            Some(ListRanges {
                slot,
                v4: &p.v4,
                v6: &p.v6,
            })
        })
        .collect()
}

/// The slots of the enabled lists, by action.
pub fn masks(lists: &Lists, slots: &BTreeMap<String, u32>) -> ListMasks {
    let mut masks = ListMasks::default();
    for entry in lists.entries().iter().filter(|e| e.enabled) {
        if let Some(&slot) = slots.get(&entry.name) {
            match entry.action {
                ListAction::Drop => masks.drop |= 1 << slot,
                ListAction::Pass => masks.pass |= 1 << slot,
            }
        }
    }
    masks
}

/// The names of the lists whose bits are set in `mask`.
pub fn names_in(slots: &BTreeMap<String, u32>, mask: u32) -> Vec<String> {
    slots
        .iter()
        .filter(|&(_, &s)| mask & (1 << s) != 0)
        .map(|(n, _)| n.clone())
        .collect()
}

fn list_err(e: impl std::fmt::Display) -> ControlError {
    ControlError::Refused(e.to_string())
}

/// Rebuilds the tables with the lists as they are now.
fn rebuild(state: &mut State) -> Result<(), ControlError> {
    let state = &mut *state;
    commit::install(
        &mut state.datapath,
        &state.db,
        state.asn.as_deref(),
        &ranges(&state.lists, &state.list_slots),
    )
    .map(|_| ())
    .map_err(|e| ControlError::Datapath(format!("tables not installed: {e}")))
}

/// Swaps in the policy with the lists' current enabled masks.
fn repolicy(state: &mut State) -> Result<(), ControlError> {
    let masks = masks(&state.lists, &state.list_slots);
    state.datapath.set_list_masks(masks);
    let value = state.datapath.compile_policy(&state.saved.policy);
    state
        .datapath
        .set_policy(&value)
        .map_err(|e| ControlError::Datapath(e.to_string()))
}

/// Refuses when an enabled drop list would drop `caller` (no pass list or exception saving it).
fn check_lockout(state: &State, caller: Option<IpAddr>, force: bool) -> Result<(), ControlError> {
    let Some(addr) = caller.filter(|_| !force) else {
        return Ok(());
    };
    let (filtered, _) = policy::filtered_as(addr);
    if state.saved.policy.exception_for(filtered).is_some() {
        return Ok(());
    }
    let holding = state.lists.holding(filtered);
    let enabled = |action: ListAction| {
        holding
            .iter()
            .filter(|n| {
                state
                    .lists
                    .get(n)
                    .is_some_and(|e| e.enabled && e.action == action)
            })
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    };
    let dropping = enabled(ListAction::Drop);
    if dropping.is_empty() || !enabled(ListAction::Pass).is_empty() || state.saved.policy.monitor {
        return Ok(());
    }
    Err(ControlError::Refused(format!(
        "refused: list {} holds your own session's address {addr}. Add it as an exception first \
         (`geofilter except add {filtered}`), or pass --force",
        dropping.join(", ")
    )))
}

/// The `show` row of list `name` (none if there is no such list).
fn rows_named(state: &State, name: &str) -> ListRows {
    ListRows {
        lists: state
            .lists
            .show()
            .into_iter()
            .filter(|r| r.name == name)
            .collect(),
    }
}

/// Saves the lists and their slots with the rest of the state.
fn save(state: &mut State) {
    state.saved.lists = state.lists.entries();
    state.saved.list_slots = state.list_slots.clone();
    commit::persist(state);
}

impl Daemon {
    pub(super) fn list_add(
        &self,
        spec: ListSpec,
        caller: Option<IpAddr>,
        force: bool,
    ) -> Result<Reply, ControlError> {
        let mut state = self.lock();
        let name = spec.name.clone();
        state.lists.add(spec).map_err(list_err)?;
        let undo = |state: &mut State, e: ControlError| {
            let _ = state.lists.del(&name);
            state.list_slots.remove(&name);
            e
        };
        if let Err(e) = slot_for(&mut state.list_slots, &name)
            .and_then(|_| check_lockout(&state, caller, force))
            .and_then(|()| rebuild(&mut state))
        {
            return Err(undo(&mut state, e));
        }
        if let Err(e) = repolicy(&mut state) {
            let e = undo(&mut state, e);
            let _ = rebuild(&mut state);
            return Err(e);
        }
        save(&mut state);
        Ok(Reply::Lists(rows_named(&state, &name)))
    }

    pub(super) fn list_del(&self, name: &str) -> Result<Reply, ControlError> {
        let mut state = self.lock();
        let rows = rows_named(&state, name);
        let was = state
            .lists
            .get(name)
            .map(|e| e.enabled)
            .ok_or_else(|| ControlError::Refused(format!("no list named {name}")))?;
        // The policy without it first, then tables without its bit; the registry (and the
        // cached copy) forgets it only once the kernel no longer uses it.
        state.lists.set_enabled(name, false).map_err(list_err)?;
        if let Err(e) = repolicy(&mut state) {
            let _ = state.lists.set_enabled(name, was);
            return Err(e);
        }
        let slot = state.list_slots.remove(name);
        if let Err(e) = rebuild(&mut state) {
            if let Some(slot) = slot {
                state.list_slots.insert(name.to_owned(), slot);
            }
            let _ = state.lists.set_enabled(name, was);
            let _ = repolicy(&mut state);
            return Err(e);
        }
        state.lists.del(name).map_err(list_err)?;
        save(&mut state);
        Ok(Reply::Lists(rows))
    }

    pub(super) fn list_enable(
        &self,
        name: &str,
        on: bool,
        caller: Option<IpAddr>,
        force: bool,
    ) -> Result<Reply, ControlError> {
        let mut state = self.lock();
        let was = state
            .lists
            .get(name)
            .map(|e| e.enabled)
            .ok_or_else(|| ControlError::Refused(format!("no list named {name}")))?;
        state.lists.set_enabled(name, on).map_err(list_err)?;
        if let Err(e) = check_lockout(&state, caller, force).and_then(|()| repolicy(&mut state)) {
            let _ = state.lists.set_enabled(name, was);
            return Err(e);
        }
        save(&mut state);
        Ok(Reply::Lists(rows_named(&state, name)))
    }

    pub(super) fn list_update(&self, name: Option<&str>) -> Result<Reply, ControlError> {
        let mut state = self.lock();
        let report = state.lists.update(name).map_err(list_err)?;
        if !report.changed.is_empty() {
            rebuild(&mut state)?;
        }
        save(&mut state);
        Ok(Reply::ListUpdated(ListUpdateReply::from(&report)))
    }

    pub(super) fn list_show(&self) -> Reply {
        Reply::Lists(ListRows {
            lists: self.lock().lists.show(),
        })
    }

    /// The name of the list in slot `slot`.
    pub fn list_name(&self, state: &State, slot: u32) -> Option<String> {
        state
            .list_slots
            .iter()
            .find(|&(_, &s)| s == slot)
            .map(|(n, _)| n.clone())
    }
}
