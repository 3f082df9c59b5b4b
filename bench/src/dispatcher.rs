//! `dispatcher`: what libxdp's dispatcher adds per packet, geofilter test-run alone
//! (exclusive attachment) against the same program in slot 0 of libxdp's dispatcher (the
//! dispatcher's call into its `prog0` slot, the freplace trampoline, the chain-action check).
//!
//! Both run through `BPF_PROG_TEST_RUN` on the same frame (one allowed source, so the filter's
//! whole path and a pass), alternating within each round; medians. The benchmark driver's
//! source rotation cannot be used: the kernel refuses a tail call into a program whose
//! subprograms are extended (freplace).

use aya::programs::{TestRun, TestRunOptions, Xdp};
use geofilter_daemon::datapath::Datapath;

use crate::{
    data::{Family, World},
    harness::udp_frame,
    test_run::median,
};

/// ns per packet, or why the dispatcher could not be measured here.
pub type Cost = Result<Costs, String>;

#[derive(Clone, Copy, Debug)]
pub struct Costs {
    pub exclusive: f64,
    pub dispatcher: f64,
}

fn ns_per_run(program: &Xdp, frame: &[u8], repeat: u32) -> f64 {
    program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN")
        .duration
        .as_nanos() as f64
}

/// Measures both; a kernel (or sandbox) that refuses freplace programs gives `Err` with the
/// kernel's answer, printed in the report instead of a number.
pub fn measure(world: &World, rounds: usize, repeat: u32) -> Cost {
    let mut geofilter = Datapath::load().expect("loading geofilter");
    geofilter
        .install_tables(&world.db.v4, &world.db.v6)
        .expect("installing geofilter's tables");
    geofilter
        .set_policy(&crate::policy(world))
        .expect("geofilter policy");
    let mut object = geofilter.standalone_dispatcher().map_err(|e| {
        let why = format!("{e}");
        eprintln!("bench: dispatcher: not measured: {why}");
        why
    })?;
    let dispatcher: &Xdp = object
        .program_mut("xdp_dispatcher")
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the dispatcher program");
    let frame = udp_frame(Family::V4, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    ns_per_run(geofilter.program(), &frame, repeat / 4);
    ns_per_run(dispatcher, &frame, repeat / 4);
    let (mut alone, mut through) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        alone.push(ns_per_run(geofilter.program(), &frame, repeat));
        through.push(ns_per_run(dispatcher, &frame, repeat));
    }
    let costs = Costs {
        exclusive: median(alone),
        dispatcher: median(through),
    };
    eprintln!("bench: dispatcher: {costs:?}");
    Ok(costs)
}

/// The report's row.
pub fn print(cost: &Cost) {
    match cost {
        Ok(Costs {
            exclusive,
            dispatcher,
        }) => println!(
            "dispatcher: ns/packet through BPF_PROG_TEST_RUN, one allowed IPv4 source: \
             exclusive {exclusive:.1}, in libxdp's dispatcher {dispatcher:.1} (+{:.1})",
            dispatcher - exclusive
        ),
        Err(why) => println!("dispatcher: not measured on this kernel: {why}"),
    }
}
