//! What must be refused: wrong join tokens, clients without a certificate, a
//! second init.

use std::time::Duration;

use anyhow::{bail, ensure};
use rswarm_e2e::Role;
use rswarm_e2e::command::describe;
use rswarm_proto::api::GetClusterStatusRequest;
use rswarm_proto::api::control_client::ControlClient;

use crate::support::{REFUSAL_TIMEOUT, RESTART_TIMEOUT, stderr, with_cluster};

#[test]
fn wrong_join_tokens_are_refused_without_leaving_state() {
    with_cluster(
        "wrong_join_tokens_are_refused_without_leaving_state",
        1,
        0,
        |cluster| {
            let joiner = cluster.add_node()?;
            let manager = cluster.node(0).addr;
            let token = cluster.join_token(0, Role::Worker)?;
            let parts: Vec<&str> = token.split('-').collect();
            ensure!(
                parts.len() == 4 && parts[0] == "RSWTKN",
                "unexpected token shape: {token}"
            );
            let (digest, secret) = (parts[2], parts[3]);

            // Right CA, wrong secret (same format and length).
            let wrong_secret: String = secret
                .chars()
                .map(|c| if c == 'a' { 'b' } else { 'a' })
                .collect();
            let bad_secret = format!("RSWTKN-1-{digest}-{wrong_secret}");
            // A CA digest that is not this cluster's, with the right secret.
            let wrong_digest: String = digest
                .chars()
                .map(|c| if c == '0' { '1' } else { '0' })
                .collect();
            let bad_ca = format!("RSWTKN-1-{wrong_digest}-{secret}");

            for (what, token, expect) in [
                ("wrong secret", bad_secret, "token"),
                ("wrong CA digest", bad_ca, "does not match"),
            ] {
                let node = cluster.node(joiner);
                let output = node.try_join(&token, manager, REFUSAL_TIMEOUT)?;
                ensure!(
                    !output.status.success(),
                    "{what}: join succeeded: {}",
                    describe(&output)
                );
                let err = stderr(&output);
                ensure!(
                    err.to_lowercase().contains(expect),
                    "{what}: unclear message: {}",
                    describe(&output)
                );
                ensure!(
                    !err.contains(secret),
                    "{what}: the secret was printed: {err}"
                );
                let left: Vec<_> = std::fs::read_dir(node.data_dir())
                    .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
                ensure!(
                    left.is_empty(),
                    "{what}: state left in {}: {left:?}",
                    node.data_dir().display()
                );
            }
            let nodes = cluster.node_ls(0)?;
            ensure!(
                nodes.as_array().is_some_and(|n| n.len() == 1),
                "a refused node was registered: {nodes}"
            );

            // The right token still works after the refusals.
            cluster.join(joiner, Role::Worker, 0)?;
            cluster.wait_nodes_ready(0, 2, Duration::from_secs(30))?;
            Ok(())
        },
    );
}

#[test]
fn tcp_clients_need_the_admin_certificate() {
    with_cluster("tcp_clients_need_the_admin_certificate", 1, 0, |cluster| {
        // Some namespace on the segment to run the CLI from: a node without a daemon.
        let outsider = cluster.add_node()?;
        let manager = cluster.node(0).addr.to_string();
        let no_cert = cluster.root_dir().join("no-certificate");
        std::fs::create_dir_all(&no_cert)?;

        let with_cert = cluster.node(outsider).exec_in_netns(
            &[
                "--host",
                manager.as_str(),
                "--cert-dir",
                &cluster.node(0).admin_dir().to_string_lossy(),
                "--format",
                "json",
                "cluster",
                "status",
            ],
            REFUSAL_TIMEOUT,
        )?;
        ensure!(
            with_cert.status.success(),
            "admin certificate refused: {}",
            describe(&with_cert)
        );
        let without = cluster.node(outsider).exec_in_netns(
            &[
                "--host",
                manager.as_str(),
                "--cert-dir",
                &no_cert.to_string_lossy(),
                "cluster",
                "status",
            ],
            REFUSAL_TIMEOUT,
        )?;
        ensure!(
            !without.status.success(),
            "answered without a certificate: {}",
            describe(&without)
        );
        ensure!(
            !without.stdout.iter().any(|b| !b.is_ascii_whitespace()),
            "printed a result: {}",
            describe(&without)
        );

        // A raw gRPC client that skips the certificate entirely gets `unauthenticated`.
        let runtime = cluster.client_runtime(1)?;
        let addr = manager.clone();
        let result = runtime.run(async move {
            let channel = rswarm_proto::tls::bootstrap_channel(&addr)?;
            let mut client = ControlClient::new(channel);
            anyhow::Ok(client.get_cluster_status(GetClusterStatusRequest {}).await)
        })??;
        match result {
            Ok(status) => bail!(
                "answered a client without a certificate: {:?}",
                status.into_inner()
            ),
            Err(status) => ensure!(status.code() == tonic::Code::Unauthenticated, "{status}"),
        }
        Ok(())
    });
}

#[test]
fn init_twice_on_one_data_dir_is_refused() {
    with_cluster("init_twice_on_one_data_dir_is_refused", 1, 0, |cluster| {
        let cluster_id = cluster.status(0)?["cluster_id"].clone();
        cluster.node_mut(0).sigterm()?;
        let output = cluster.node(0).try_init(REFUSAL_TIMEOUT)?;
        ensure!(
            !output.status.success(),
            "second init succeeded: {}",
            describe(&output)
        );
        ensure!(
            stderr(&output).contains("rswarm daemon"),
            "no hint to use rswarm daemon: {}",
            describe(&output)
        );

        // The node is intact: `rswarm daemon` brings back the same cluster.
        cluster.node_mut(0).start_daemon()?;
        let status = cluster.wait_managers(0, 1, RESTART_TIMEOUT)?;
        ensure!(
            status["cluster_id"] == cluster_id,
            "cluster changed: {status}"
        );
        Ok(())
    });
}
