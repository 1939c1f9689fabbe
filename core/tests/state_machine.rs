//! The state machine of two workers sharing a store under random event sequences (see
//! `tests/machine`): nothing forwarded without every check, no credential crossing users, no
//! request left waiting (for its own worker or the other's exchange).
//! The same driver is the `state_machine` cargo-fuzz target (`make fuzz`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod machine;

/// xorshift64*: reproducible sequences without a dependency.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_event_sequences_keep_every_invariant() {
    let runs: u64 = std::env::var("STATE_MACHINE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut total = machine::Stats::default();
    for seed in 0..runs {
        let data = bytes(seed, 2 * (20 + (seed as usize % 180)));
        match std::panic::catch_unwind(|| machine::Machine::run(&data)) {
            Ok(stats) => total += stats,
            Err(_) => panic!("seed {seed} broke an invariant (input {data:?})"),
        }
    }
    // The sequences reach every path, not only refusals.
    eprintln!("{runs} sequences: {total:?}");
    assert!(
        total.forwarded > runs as usize
            && total.denied > runs as usize
            && total.vault_answers > runs as usize
            && total.key_answers > runs as usize
            && total.went_away > runs as usize
            && total.disconnects > runs as usize / 2
            && total.waited_elsewhere > runs as usize / 10,
        "{total:?}"
    );
}

#[test]
fn the_fuzz_seeds_keep_every_invariant() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/state_machine");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let data = std::fs::read(entry.path()).unwrap();
        machine::Machine::run(&data);
    }
}
