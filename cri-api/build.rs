//! Generates the runtime.v1 messages, clients and servers from proto/api.proto. Needs
//! `protoc` (Debian: protobuf-compiler); PROTOC names another one.

fn main() {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/api.proto"], &["proto"])
        .unwrap_or_else(|e| panic!("compiling proto/api.proto (is protoc installed? apt-get install protobuf-compiler): {e}"));
}
