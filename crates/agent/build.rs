//! Generate the agent protocol's messages, client and server from `proto/agent.proto`
//! (needs `protoc`, from Debian's protobuf-compiler).
fn main() {
    println!("cargo:rerun-if-changed=proto/agent.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/agent.proto"], &["proto"])
        .expect("compile proto/agent.proto (is protoc installed? scripts/setup.sh installs it)");
}
