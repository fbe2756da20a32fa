//! rswarm container runtime, behind the Executor/Controller seam.
#![forbid(unsafe_code)]
