//! Shared helpers for the benchmark binaries (work in progress).
