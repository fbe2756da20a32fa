use super::*;
use crate::args::Format;
use crate::commands::Context;
use crate::commands::test_support::{start, text};
use rswarm_proto::api::{Meta, TaskState, TaskStatus};

const PENDING_ERR: &str = "no suitable node (2 nodes not available for new tasks)";

fn task(id: &str, slot: u64, node: &str, created: u64, state: TaskState, err: &str) -> Task {
    let ended = matches!(state, TaskState::Failed | TaskState::Rejected);
    Task {
        id: id.into(),
        meta: Some(Meta {
            created_at: created,
            ..Default::default()
        }),
        service_id: "svc1".into(),
        service_name: "web".into(),
        slot,
        node_id: node.into(),
        desired_state: if ended {
            TaskState::Shutdown.into()
        } else {
            TaskState::Running.into()
        },
        status: Some(TaskStatus {
            state: state.into(),
            timestamp: created,
            err: err.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn replicated(n: u64) -> Watch {
    Watch {
        service_id: "svc1".into(),
        service_name: "web".into(),
        expect: Expect::Replicated(n),
        constraints: vec![],
        timeout: Duration::from_secs(10),
        interval: Duration::from_millis(1),
        tty: false,
        target: None,
    }
}

fn global(constraints: &[&str]) -> Watch {
    Watch {
        expect: Expect::Global,
        constraints: constraints.iter().map(|c| c.to_string()).collect(),
        ..replicated(0)
    }
}

/// Runs `watch` against the fake behind `ctx`, never interrupted.
async fn run(ctx: &Context, w: &Watch) -> (String, anyhow::Result<()>) {
    let mut control = ctx.control().await.unwrap();
    let mut out = Vec::new();
    let result = watch(&mut control, w, &mut out, std::future::pending()).await;
    (text(out), result)
}

#[tokio::test]
async fn prints_each_change_until_converged() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().task_script = [
        vec![],
        vec![task("a", 1, "", 1, TaskState::Pending, PENDING_ERR)],
        vec![
            task("a", 1, "node-1", 1, TaskState::Running, ""),
            task("b", 2, "node-2", 1, TaskState::Starting, ""),
        ],
        vec![
            task("a", 1, "node-1", 1, TaskState::Running, ""),
            task("b", 2, "node-2", 1, TaskState::Running, ""),
        ],
    ]
    .into();
    let (out, result) = run(&ctx, &replicated(2)).await;
    result.unwrap();
    assert_eq!(
        out,
        "overall progress: 0 out of 2 tasks\n\
         1/2: new\n\
         2/2: new\n\
         1/2: pending: no suitable node (2 nodes not available for new tasks)\n\
         overall progress: 1 out of 2 tasks\n\
         1/2: running\n\
         2/2: starting\n\
         overall progress: 2 out of 2 tasks\n\
         2/2: running\n\
         verify: Service converged\n"
    );
    let queries = fake.lock().task_queries.clone();
    assert_eq!(queries.len(), 4);
    assert!(
        queries
            .iter()
            .all(|q| q.service == "svc1" && q.desired_state.is_empty())
    );
}

#[tokio::test]
async fn a_terminal_gets_the_lines_redrawn() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().task_script = [
        vec![task("a", 1, "node-1", 1, TaskState::Starting, "")],
        vec![task("a", 1, "node-1", 1, TaskState::Running, "")],
    ]
    .into();
    let w = Watch {
        tty: true,
        ..replicated(1)
    };
    let (out, result) = run(&ctx, &w).await;
    result.unwrap();
    assert_eq!(
        out,
        "overall progress: 0 out of 1 tasks\n1/1: starting\n\
         \x1b[2A\x1b[Joverall progress: 1 out of 1 tasks\n1/1: running\n\
         verify: Service converged\n"
    );
}

#[tokio::test]
async fn repeated_failures_stop_the_watch_and_name_the_tasks() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().tasks = vec![
        task("f1", 1, "node-1", 1, TaskState::Failed, "exit code 1"),
        task(
            "f2",
            1,
            "node-1",
            2,
            TaskState::Rejected,
            "pull access denied",
        ),
        task("f3", 1, "node-2", 3, TaskState::Failed, "exit code 1"),
        task("now", 1, "node-2", 4, TaskState::Starting, ""),
    ];
    let (_, result) = run(&ctx, &replicated(1)).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "tasks of service web keep failing (1/1); failed tasks:\n  \
         f3 (1/1): failed: exit code 1\n  \
         f2 (1/1): rejected: pull access denied\n  \
         f1 (1/1): failed: exit code 1"
    );
    // Decided at the first look.
    assert_eq!(fake.lock().task_queries.len(), 1);
}

#[tokio::test]
async fn gives_up_after_the_timeout_saying_why() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().tasks = vec![
        task("a", 1, "node-1", 1, TaskState::Running, ""),
        task("old", 2, "node-2", 1, TaskState::Failed, "exit code 137"),
        task("b", 2, "", 2, TaskState::Pending, PENDING_ERR),
    ];
    let w = Watch {
        timeout: Duration::from_millis(50),
        interval: Duration::from_millis(10),
        ..replicated(2)
    };
    let started = std::time::Instant::now();
    let (_, result) = run(&ctx, &w).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "service web did not converge within 50ms: 1 of 2 tasks running\n  \
             2/2: pending: {PENDING_ERR}\n\
             failed tasks:\n  old (2/2): failed: exit code 137"
        )
    );
    assert!(fake.lock().task_queries.len() >= 3);
}

#[tokio::test]
async fn a_missing_service_fails_at_once() {
    let (_fake, ctx, _dir) = start(Format::Table);
    let w = Watch {
        service_id: "gone".into(),
        ..replicated(1)
    };
    let (_, result) = run(&ctx, &w).await;
    assert_eq!(result.unwrap_err().to_string(), "service gone not found");
}

#[tokio::test]
async fn interrupting_names_the_way_to_follow_up() {
    let (_fake, ctx, _dir) = start(Format::Table);
    let mut control = ctx.control().await.unwrap();
    let mut out = Vec::new();
    let err = watch(
        &mut control,
        &replicated(1),
        &mut out,
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interrupted: service web was created and its rollout goes on; follow it with \
         `rswarm service ps web`"
    );
}

#[tokio::test]
async fn global_without_an_eligible_node_says_so() {
    let (_fake, ctx, _dir) = start(Format::Table);
    let (out, result) = run(&ctx, &global(&["node.labels.zone==mars"])).await;
    result.unwrap();
    assert!(
        out.ends_with("verify: no node is eligible for global service web: it has no tasks\n"),
        "{out}"
    );
}

#[tokio::test]
async fn global_waits_for_tasks_while_nodes_are_eligible() {
    let (fake, ctx, _dir) = start(Format::Table);
    // A leader change under the first two looks: looked at again, not an error.
    fake.lock().list_nodes_unavailable = 2;
    fake.lock().task_script = [
        vec![],
        vec![
            task("a", 0, "node-1", 1, TaskState::Running, ""),
            task("b", 0, "node-2", 1, TaskState::Running, ""),
        ],
    ]
    .into();
    let (out, result) = run(&ctx, &global(&["node.role==manager"])).await;
    result.unwrap();
    assert!(out.contains("node-1: running\nnode-2: running\n"), "{out}");
    assert!(out.ends_with("verify: Service converged\n"), "{out}");
}

#[tokio::test]
async fn a_global_update_leaves_paused_and_unready_nodes_to_later() {
    use crate::commands::progress::tests::{image_spec, update_to};
    use rswarm_proto::api::{NodeAvailability, NodeState};
    let on = |id: &str, node: &str, image: &str| {
        let mut t = task(id, 0, node, 1, TaskState::Running, "");
        t.spec = Some(image_spec(image));
        t
    };
    let tasks = || {
        vec![
            on("a", "node-1", "web:2"),
            on("b", "node-2", "web:1"),
            on("c", "node-3", "web:1"),
        ]
    };
    let (fake, ctx, _dir) = start(Format::Table);
    {
        let mut state = fake.lock();
        // node-2 paused, node-3 disconnected (neither down nor drained: their
        // tasks stay, and the managers do not replace them).
        state.nodes[1].spec.as_mut().unwrap().availability = NodeAvailability::Pause.into();
        state.nodes[2].status.as_mut().unwrap().state = NodeState::Disconnected.into();
        state.task_script = [tasks()].into();
    }
    let w = Watch {
        target: Some(update_to("web:2", 0)),
        ..global(&[])
    };
    let (out, result) = run(&ctx, &w).await;
    result.unwrap();
    assert_eq!(
        out,
        "overall progress: 1 out of 3 tasks\n\
         node-1: running\n\
         node-2: running (previous spec, kept while the node is paused: replaced once it is active and ready)\n\
         node-3: running (previous spec, kept while the node is disconnected: replaced once it is active and ready)\n\
         verify: Service converged\n\
         note: 2 task(s) keep the previous spec on nodes that are paused or not ready (node-2, \
         node-3); the managers replace them once their node is active and ready\n"
    );
    // With node-2 active again, its task is waited for.
    {
        let mut state = fake.lock();
        state.nodes[1].spec.as_mut().unwrap().availability = NodeAvailability::Active.into();
        state.task_script = [tasks()].into();
    }
    let w = Watch {
        timeout: Duration::from_millis(50),
        ..w
    };
    let (out, result) = run(&ctx, &w).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("node-2: running (previous spec, to be replaced)"),
        "{err}\n{out}"
    );
}
