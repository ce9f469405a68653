//! Compiles `proto/raft.proto` and `proto/admin.proto` (the cluster's gRPC services) with
//! tonic-prost-build and the vendored `protoc`, so building needs no system protoc.
//! Must not generate anything else.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields become `bytes::Bytes`: chunk payloads are not copied out of the frame.
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/raft.proto", "proto/admin.proto"],
        &["proto"],
    )?;
    Ok(())
}
