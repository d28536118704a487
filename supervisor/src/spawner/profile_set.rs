//! The set of profiles runs may name: the shipped ones, plus the `*.toml`
//! files of the policies folder (`--policies DIR`), each named by its file
//! stem. A file named like a shipped profile replaces it, as a file in
//! /etc/systemd replaces one in /usr/lib/systemd.
//!
//! Loading is all or nothing and fails fast: the first file that does not
//! load stops it, with the file and the profile loader's reason (which
//! names the field), so a broken folder never half-applies.

use std::collections::BTreeMap;
use std::path::Path;

use ccos_jail::Profile;

use crate::model::is_profile_name;

/// Loads and compiles every profile of the set, by name.
pub fn load(dir: Option<&Path>) -> Result<BTreeMap<String, Profile>, String> {
    let mut set = BTreeMap::new();
    for name in Profile::shipped_names() {
        let profile = Profile::shipped(name).map_err(|e| format!("shipped profile {name}: {e}"))?;
        set.insert(name.to_owned(), profile);
    }
    let Some(dir) = dir else {
        return Ok(set);
    };
    for path in profile_files(dir)? {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if !is_profile_name(&name) {
            return Err(format!(
                "{}: {name:?} is not a profile name (letters, digits, '-', '_' and '.', not starting with '.')",
                path.display()
            ));
        }
        let profile = Profile::load_file(&path).map_err(|e| e.to_string())?;
        set.insert(name, profile);
    }
    Ok(set)
}

/// The `*.toml` files directly in `dir`, sorted (so the error for a folder
/// with two broken files is always about the same one).
fn profile_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("the policies folder {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("the policies folder {}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_folder_the_set_is_the_shipped_profiles() {
        let set = load(None).unwrap();
        assert_eq!(set.keys().map(String::as_str).collect::<Vec<_>>(), vec!["default", "strict"]);
        assert!(set["default"].hash.starts_with("sha256:"), "{}", set["default"].hash);
    }

    #[test]
    fn a_folder_adds_profiles_and_overrides_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.toml"), "hostname = \"net\"\n").unwrap();
        std::fs::write(dir.path().join("strict.toml"), "hostname = \"mine\"\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a profile").unwrap();
        let set = load(Some(dir.path())).unwrap();
        assert_eq!(set.keys().map(String::as_str).collect::<Vec<_>>(), vec!["default", "net", "strict"]);
        assert_eq!(set["strict"].hostname, "mine");
        assert!(set["strict"].origin.ends_with("strict.toml"), "{}", set["strict"].origin);
    }

    #[test]
    fn one_broken_file_refuses_the_whole_folder_naming_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "hostname = \"a\"\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "hostnme = \"typo\"\n").unwrap();
        let err = load(Some(dir.path())).unwrap_err();
        assert!(err.contains("b.toml") && err.contains("hostnme"), "{err}");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = load(Some(Path::new("/nonexistent/ccos-policies"))).unwrap_err();
        assert!(err.contains("/nonexistent/ccos-policies"), "{err}");
    }
}
