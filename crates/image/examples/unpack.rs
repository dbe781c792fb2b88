//! Benchmark driver for benches/image/unpack.sh.
//!
//!   unpack import STORE LAYOUT_DIR NAME   import an OCI layout into a store (untimed setup)
//!   unpack flat STORE NAME OUT_DIR        unpack the image flattened into OUT_DIR (timed)

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["import", store, layout, name] => name
            .parse()
            .and_then(|r| {
                berth_image::Store::open(Path::new(store))?.import(Path::new(layout), Some(&r))
            })
            .map(|id| println!("{id}")),
        ["flat", store, name, out] => std::fs::create_dir_all(out)
            .map_err(|e| berth_image::Error::Io {
                path: out.into(),
                source: e,
            })
            .and_then(|_| {
                berth_image::Store::open(Path::new(store))?.unpack_flat(name, Path::new(out))
            }),
        _ => {
            eprintln!("usage: unpack import STORE LAYOUT NAME | unpack flat STORE NAME OUT");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unpack: {e}");
            ExitCode::FAILURE
        }
    }
}
