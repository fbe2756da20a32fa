//! rswarm manager.
//!
//! # Layout
//! - [`ca`]: the cluster's root CA; signs node and admin certificates.
#![forbid(unsafe_code)]

pub mod ca;
