//! The test kit of the dataflux workspace: the HTTP servers its tests and benchmarks put in
//! front of (or in place of) an object store, in one place.
//!
//! - [`fault_proxy`]: injects the faults real stores have — 503 storms, requests that never
//!   answer, bodies cut short — per request kind, reproducibly from a seed (`dataflux`'s
//!   feature `testing` re-exports it as `dataflux::testing`).
//! - [`delay_proxy`]: adds a fixed round trip to every request (benchmarks against an
//!   emulator, as if the store were far away).
//! - [`list_server`] and [`listgen`]: a GCS JSON API list server over millions of generated
//!   names, each request O(log N + page) (`benches`' `list_server` binary is its command
//!   line).
//!
//! Every store and every store wrapper also passes one conformance suite:
//! `dataflux/tests/conformance.rs`.

pub mod delay_proxy;
pub mod fault_proxy;
pub mod list_server;
pub mod listgen;
