//! The paths `validate` and `test` take: files, directories (every
//! `*.yaml` and `*.yml` below, recursively) and glob patterns, for shells
//! that pass them on unexpanded.

use std::path::{Path, PathBuf};

/// The pipeline files `args` name, each once, in the order given;
/// directories and patterns contribute their files in name order.
pub(crate) fn expand(args: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in args {
        let found = if arg.contains(['*', '?', '[']) {
            pattern(arg)?
        } else {
            let path = Path::new(arg);
            if path.is_dir() {
                let mut found = Vec::new();
                walk(path, &mut found).map_err(|error| format!("cannot read `{arg}`: {error}"))?;
                if found.is_empty() {
                    return Err(format!(
                        "no pipeline files (`*.yaml`, `*.yml`) under `{arg}`"
                    ));
                }
                found
            } else if path.exists() {
                vec![path.to_path_buf()]
            } else {
                return Err(format!("`{arg}` does not exist"));
            }
        };
        for file in found {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

fn pattern(arg: &str) -> Result<Vec<PathBuf>, String> {
    let matches = glob::glob(arg).map_err(|error| format!("invalid pattern `{arg}`: {error}"))?;
    let mut found = Vec::new();
    for entry in matches {
        let path = entry.map_err(|error| {
            format!(
                "cannot read `{}`: {}",
                error.path().display(),
                error.error()
            )
        })?;
        if path.is_file() {
            found.push(path);
        }
    }
    if found.is_empty() {
        return Err(format!("no files match `{arg}`"));
    }
    found.sort();
    Ok(found)
}

/// Every YAML file below `dir`, in name order.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, found)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
    Ok(())
}
