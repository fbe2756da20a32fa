//! `rswarm join-token worker|manager`.

use std::io::Write;

use rswarm_proto::api::{JoinTokenRequest, JoinTokenResponse};
use serde_json::json;

use super::{Context, rpc_error, write_line};
use crate::args::{Format, JoinTokenArgs, TokenRole};
use crate::output;

/// Shown when the cluster reports no manager address to join through.
const ADDR_PLACEHOLDER: &str = "<MANAGER_ADDR>";

/// Prints the join token (rotating it first with `--rotate`): the full join command,
/// the token alone with `-q`, or `{"role","token","manager_addrs"}` as JSON.
pub async fn run(ctx: &Context, args: JoinTokenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let reply = ctx
        .control()
        .await?
        .get_join_token(JoinTokenRequest {
            role: args.role.as_str().to_string(),
            rotate: args.rotate,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    match ctx.format {
        Format::Json => output::write_json(
            out,
            &json!({
                "role": args.role.as_str(),
                "token": reply.token,
                "manager_addrs": reply.manager_addrs,
            }),
        ),
        Format::Table if args.quiet => write_line(out, &reply.token),
        Format::Table => {
            write!(out, "{}", instructions(args.role, &reply, args.rotate))?;
            Ok(())
        }
    }
}

/// The text telling an operator how to add a node.
fn instructions(role: TokenRole, reply: &JoinTokenResponse, rotated: bool) -> String {
    let role = role.as_str();
    let addr = reply
        .manager_addrs
        .first()
        .map_or(ADDR_PLACEHOLDER, String::as_str);
    let mut text = String::new();
    if rotated {
        text.push_str(&format!("Successfully rotated {role} join token.\n\n"));
    }
    text.push_str(&format!(
        "To add a {role} to this cluster, run the following command:\n\n    \
         rswarm join --token {} {addr}\n",
        reply.token
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{start, text};

    fn args(role: TokenRole, quiet: bool, rotate: bool) -> JoinTokenArgs {
        JoinTokenArgs {
            role,
            quiet,
            rotate,
        }
    }

    #[tokio::test]
    async fn worker_instructions() {
        let (_fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        run(&ctx, args(TokenRole::Worker, false, false), &mut out)
            .await
            .unwrap();
        assert_eq!(
            text(out),
            "To add a worker to this cluster, run the following command:\n\n    \
             rswarm join --token SWMTKN-worker-false 127.0.0.1:4242\n"
        );
    }

    #[tokio::test]
    async fn quiet_and_rotate() {
        let (_fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        run(&ctx, args(TokenRole::Manager, true, true), &mut out)
            .await
            .unwrap();
        assert_eq!(text(out), "SWMTKN-manager-true\n");
    }

    #[tokio::test]
    async fn json() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        run(&ctx, args(TokenRole::Manager, false, false), &mut out)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["token"], "SWMTKN-manager-false");
        assert_eq!(value["role"], "manager");
    }

    #[test]
    fn rotated_text_and_missing_address() {
        let reply = JoinTokenResponse {
            token: "T".into(),
            manager_addrs: vec![],
        };
        assert_eq!(
            instructions(TokenRole::Manager, &reply, true),
            "Successfully rotated manager join token.\n\n\
             To add a manager to this cluster, run the following command:\n\n    \
             rswarm join --token T <MANAGER_ADDR>\n"
        );
    }
}
