//! The generated CRI v1 API (package `runtime.v1`): the only module that names prost or
//! tonic-generated items directly.
#![allow(clippy::all, missing_docs, rustdoc::all)]
tonic::include_proto!("runtime.v1");
