//! Compiles the `.proto` files with protox (pure Rust), so that building rswarm
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/types.proto",
        "proto/control.proto",
        "proto/ca.proto",
        "proto/raft.proto",
        "proto/dispatcher.proto",
        "proto/images.proto",
        "proto/logs.proto",
        "proto/volumes.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // The cluster's objects are also the Raft state machine's contents, which are
        // encoded with postcard (serde) in log entries and snapshots.
        .type_attribute(".rswarm", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(fds)?;
    Ok(())
}
