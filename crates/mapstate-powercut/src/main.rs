//! Power-cut workload and checker.
fn main() {}
