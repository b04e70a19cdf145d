//! Takes the files `/docs` serves out of the vendored Swagger UI archive.

use std::io::{Cursor, Read};
use std::path::Path;

const FILES: &[&str] = &[
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "favicon-32x32.png",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::var("OUT_DIR")?;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED))?;
    for file in FILES {
        let suffix = format!("/dist/{file}");
        let name = archive
            .file_names()
            .filter_map(Result::ok)
            .find(|n| n.ends_with(&suffix) && !n.contains("/flavors/"))
            .ok_or_else(|| format!("{file} is not in the Swagger UI archive"))?
            .to_string();
        let mut bytes = Vec::new();
        archive.by_name(&name)?.read_to_end(&mut bytes)?;
        std::fs::write(Path::new(&out).join(file), bytes)?;
    }
    println!("cargo::rerun-if-changed=build.rs");
    Ok(())
}
