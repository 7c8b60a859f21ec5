//! Runs a Sieve script over a message many times and prints the time per run: the
//! interpreter's cost without the server around it (bench/run-sieve.sh measures the server).
//!
//!   cargo run --release -p tern-sieve --example run_script -- SCRIPT MESSAGE [RUNS]

use std::time::Instant;
use tern_sieve::{Envelope, Limits, NoHost, compile, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(script), Some(message)) = (args.get(1), args.get(2)) else {
        return Err("usage: run_script SCRIPT MESSAGE [RUNS]".into());
    };
    let runs: u32 = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(10_000);
    let script = compile(&std::fs::read_to_string(script)?).map_err(|e| e.to_string())?;
    let raw = std::fs::read(message)?;
    let envelope = Envelope { from: Some("sender@client.test".into()), to: "user1@bench.test".into(), auth: None };
    let limits = Limits::default();
    let mut steps = 0;
    let started = Instant::now();
    for _ in 0..runs {
        steps += run(&script, &raw, &envelope, &NoHost, &limits).steps;
    }
    let each = started.elapsed().as_secs_f64() / f64::from(runs);
    println!("{runs} runs, {:.1} us per run, {} steps per run", each * 1e6, steps / u64::from(runs));
    Ok(())
}
