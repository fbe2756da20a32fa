//! rswarm wire types.
//!
//! # Layout
//! - [`api`]: the generated protobuf messages and gRPC clients/servers (control,
//!   node CA, Raft transport, dispatcher) and the cluster's stored objects.
//! - [`validate`]: parsing and validation of user input (sizes, ports, constraints,
//!   env), shared by the CLI and the managers so both give the same errors.
//! - [`names`]: names derived from stored objects (a task's `SERVICE.SLOT`).
//! - [`rollout`]: whether a task was made from its service's current spec.
//! - [`blobs`]: streaming an image blob from a manager into a local store.
//! - [`tls`]: certificate roles, join tokens and rustls configurations for mTLS
//!   between nodes; shared by managers and workers, which never depend on each other.
#![forbid(unsafe_code)]

/// Generated protobuf and gRPC code (package `rswarm`).
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("rswarm");

    impl Node {
        /// Ready and active (a node without a spec is active): new tasks may be
        /// placed here.
        pub fn takes_new_tasks(&self) -> bool {
            self.status
                .as_ref()
                .is_some_and(|s| s.state == NodeState::Ready as i32)
                && self
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.availability == NodeAvailability::Active as i32)
        }

        /// Neither down nor drained: the tasks it has may stay (on a paused or
        /// not-ready node they stay, but none is added).
        pub fn keeps_tasks(&self) -> bool {
            self.status
                .as_ref()
                .is_none_or(|s| s.state != NodeState::Down as i32)
                && self
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.availability != NodeAvailability::Drain as i32)
        }
    }

    impl PortConfig {
        /// Published in host mode: bound only on the nodes running a task, straight
        /// to it (otherwise ingress: on every node, balanced over all tasks).
        pub fn is_host_mode(&self) -> bool {
            self.publish_mode == PublishMode::Host as i32
        }
    }
}

pub mod blobs;
pub mod names;
pub mod rollout;
pub mod tls;
pub mod validate;
