//! Generate the CRI v1 messages and the server traits from `proto/api.proto` (needs
//! `protoc`, from Debian's protobuf-compiler). Only the server side is generated.
fn main() {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // RPCs berth does not implement answer Unimplemented.
        .generate_default_stubs(true)
        .compile_protos(&["proto/api.proto"], &["proto"])
        .expect("compile proto/api.proto (is protoc installed? scripts/setup.sh installs it)");
}
