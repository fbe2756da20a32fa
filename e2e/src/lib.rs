//! rswarm e2e harness.
