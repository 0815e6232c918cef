//! Library half of the dataflux-rs binaries (work in progress).
