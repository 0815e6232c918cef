//! DataFlux-style datasets over object stores.
