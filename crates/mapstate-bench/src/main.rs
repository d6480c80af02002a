//! Benchmarks: mapstate against its peers, in one run.
fn main() {}
