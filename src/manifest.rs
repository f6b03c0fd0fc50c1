//! The run manifest: `<report>.manifest.json` beside every results or report file, tying the
//! file to the exact input and run that produced it. One entry per run; `--resume` appends.
//! Each entry has the same schema as `--summary-json` ([`RunSummary`]).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::summary::RunSummary;

/// Identifies the manifest format for tools that read it.
pub const SCHEMA: &str = "mca-attest/manifest/v1";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    schema: String,
    /// The report file this manifest describes.
    report: String,
    runs: Vec<serde_json::Value>,
}

/// Where the manifest of `report` lives.
pub fn manifest_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// The runs recorded beside `report`, oldest first (none when there is no readable manifest).
pub fn runs(report: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(manifest_path(report))
        .ok()
        .and_then(|text| serde_json::from_str::<Manifest>(&text).ok())
        .map(|m| m.runs)
        .unwrap_or_default()
}

/// Adds `summary` to the manifest beside `written`, the file the run wrote: appended to the
/// history when `append` (a resumed run), else a new history. The manifest names `report`,
/// the final file it describes (a staged report is written in its partial file and renamed,
/// with its manifest, when the run completes). Replaced atomically through a temporary file
/// of its own, so a crash never leaves a torn manifest and two writers never share a scratch
/// name.
pub fn record(
    written: &Path,
    report: &Path,
    summary: &RunSummary,
    append: bool,
) -> io::Result<PathBuf> {
    let path = manifest_path(written);
    let mut runs = Vec::new();
    if append && let Ok(text) = std::fs::read_to_string(&path) {
        match serde_json::from_str::<Manifest>(&text) {
            Ok(existing) => runs = existing.runs,
            Err(e) => tracing::warn!(
                "the manifest '{}' is unreadable ({e}); starting a new history",
                path.display()
            ),
        }
    }
    runs.push(serde_json::to_value(summary).map_err(io::Error::other)?);
    let manifest = Manifest {
        schema: SCHEMA.to_string(),
        report: report.display().to_string(),
        runs,
    };
    let mut text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    text.push('\n');
    crate::files::replace_private(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_path_sits_beside_the_report() {
        assert_eq!(
            manifest_path(Path::new("/d/r.csv")),
            PathBuf::from("/d/r.csv.manifest.json")
        );
    }
}
