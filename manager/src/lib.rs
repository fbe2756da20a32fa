//! rswarm manager.
#![forbid(unsafe_code)]
