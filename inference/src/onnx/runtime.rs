//! Finding and loading the ONNX Runtime library (`libonnxruntime.so`) at run time, once per
//! process.
//!
//! The `ort` crate is built with `load-dynamic`: nothing is downloaded or linked at build time,
//! and the library is looked for, in this order:
//! 1. `ORT_DYLIB_PATH`, when set (a file that is not there is an error, not a fall-through);
//! 2. next to the running binary, then in `../lib` from it (`libonnxruntime.so*`);
//! 3. the `onnxruntime` (or `onnxruntime-gpu`) wheel of the active Python environment:
//!    `$VIRTUAL_ENV`, then `$CONDA_PREFIX`, then the environment of each `python3` on `PATH`
//!    (`<prefix>/lib/python3.*/site-packages/onnxruntime/capi/`), and last where the `python3`
//!    on `PATH` itself imports `onnxruntime` from (pyenv shims, user or system site-packages).
//!
//! A library older than the API version `ort` needs is an error naming both versions; a
//! missing one is [`Error::OnnxRuntimeMissing`], whose message says how to get it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The environment variable that names the library file.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// The loaded runtime: the library's path and the process's one ONNX Runtime environment.
#[derive(Debug)]
pub struct Runtime {
    path: PathBuf,
    environment: ort::environment::Environment,
}

impl Runtime {
    /// The library file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The process's ONNX Runtime environment (sessions are built on it).
    pub(crate) fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }
}

/// Loads the runtime on first use (see the module docs for where it is looked for) and returns
/// it; later calls return the same one, or the same error.
pub fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, Error>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let path = locate()?;
            let builder = ort::init_from(&path).map_err(|e| Error::OnnxRuntimeLibrary {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let environment =
                builder
                    .with_name("dataflux")
                    .build()
                    .map_err(|e| Error::OnnxRuntimeLibrary {
                        path: path.clone(),
                        reason: format!("cannot create its environment: {e}"),
                    })?;
            // ONNX Runtime logs every graph rewrite at its info level: warnings and up only.
            environment.set_log_level(ort::logging::LogLevel::Warning);
            tracing::info!(
                library = %path.display(),
                "ONNX Runtime loaded from {}",
                path.display()
            );
            Ok(Runtime { path, environment })
        })
        .as_ref()
        .map_err(same_error)
}

/// The error of the first attempt, again (the cell keeps the original).
fn same_error(e: &Error) -> Error {
    match e {
        Error::OnnxRuntimeMissing { looked } => Error::OnnxRuntimeMissing {
            looked: looked.clone(),
        },
        Error::OnnxRuntimeLibrary { path, reason } => Error::OnnxRuntimeLibrary {
            path: path.clone(),
            reason: reason.clone(),
        },
        other => Error::OnnxRuntimeLibrary {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

/// Where the library is, by the search order of the module docs.
pub fn locate() -> Result<PathBuf> {
    let mut looked = Vec::new();
    if let Some(value) = std::env::var_os(ORT_DYLIB_PATH).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::OnnxRuntimeMissing {
            looked: vec![format!(
                "{ORT_DYLIB_PATH}={} (no such file)",
                path.display()
            )],
        });
    }
    looked.push(format!("{ORT_DYLIB_PATH} (unset)"));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        for dir in [dir.clone(), dir.join("../lib")] {
            if let Some(found) = library_in(&dir) {
                return Ok(found);
            }
            looked.push(dir.display().to_string());
        }
    }
    for prefix in python_prefixes() {
        for capi in wheel_dirs(&prefix) {
            if let Some(found) = library_in(&capi) {
                return Ok(found);
            }
        }
        looked.push(format!(
            "{}/lib/python3.*/site-packages/onnxruntime/capi",
            prefix.display()
        ));
    }
    // Last, the active Python itself (pyenv shims, user and system site-packages): where its
    // `onnxruntime` package is, if it has one.
    if let Some(capi) = python_onnxruntime_capi() {
        if let Some(found) = library_in(&capi) {
            return Ok(found);
        }
        looked.push(capi.display().to_string());
    } else {
        looked.push("python3 -c 'import onnxruntime' (no such package)".into());
    }
    Err(Error::OnnxRuntimeMissing { looked })
}

/// `onnxruntime/capi` of the `python3` on `PATH`, asked of the interpreter itself.
fn python_onnxruntime_capi() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let dir = PathBuf::from(text.trim());
    dir.is_dir().then_some(dir)
}

/// `libonnxruntime.so`, else the newest `libonnxruntime.so.<version>` in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                && p.is_file()
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

/// The prefixes of the active Python environments: `$VIRTUAL_ENV`, `$CONDA_PREFIX`, then the
/// parent of each `PATH` directory holding a `python3`, without repeats.
fn python_prefixes() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("python3").is_file() {
                if let Some(prefix) = dir.parent() {
                    prefixes.push(prefix.to_path_buf());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    prefixes.retain(|p| seen.insert(p.clone()));
    prefixes
}

/// `<prefix>/lib/python3.*/site-packages/onnxruntime/capi` for each Python version there.
fn wheel_dirs(prefix: &Path) -> Vec<PathBuf> {
    site_packages_of(prefix)
        .into_iter()
        .map(|site| site.join("onnxruntime/capi"))
        .filter(|d| d.is_dir())
        .collect()
}

/// `<prefix>/lib/python3.*/site-packages` for each Python version there, sorted.
fn site_packages_of(prefix: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("python3"))
        })
        .map(|e| e.path().join("site-packages"))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The `site-packages` directories of the active Python environments (for the NVIDIA wheels'
/// libraries the CUDA provider needs): the runtime's own first.
pub(crate) fn site_packages() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // onnxruntime/capi/libonnxruntime.so: three levels up is its site-packages.
    if let Ok(path) = locate() {
        if let Some(site) = path.parent().and_then(Path::parent).and_then(Path::parent) {
            if site.ends_with("site-packages") {
                dirs.push(site.to_path_buf());
            }
        }
    }
    for prefix in python_prefixes() {
        dirs.extend(site_packages_of(&prefix));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|p| seen.insert(p.clone()));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_plain_name_first_then_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(library_in(dir.path()), None);
        std::fs::write(dir.path().join("libonnxruntime.so.1.20.0"), b"").unwrap();
        std::fs::write(dir.path().join("libonnxruntime.so.1.32.0"), b"").unwrap();
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(
            library_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.32.0"))
        );
        std::fs::write(dir.path().join("libonnxruntime.so"), b"").unwrap();
        assert_eq!(
            library_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so"))
        );
    }

    #[test]
    fn finds_a_wheel_under_a_python_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let capi = prefix
            .path()
            .join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert_eq!(wheel_dirs(prefix.path()), vec![capi.clone()]);
        assert_eq!(
            wheel_dirs(&prefix.path().join("absent")),
            Vec::<PathBuf>::new()
        );
    }
}
