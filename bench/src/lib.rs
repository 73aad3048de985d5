//! Benchmarks live in `benches/`; comparison scripts beside this crate.
