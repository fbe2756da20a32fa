//! The proxy end to end on loopback: real listeners, real backends, real clients.

mod config_updates;
mod engines;
mod health;
mod listeners;
mod support;
mod tcp;
mod udp;
