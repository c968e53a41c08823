//! Pipeline paths for `etl validate`: what the shell left unexpanded is expanded here, so that
//! `etl validate pipelines/*.yaml pipelines/bp/*.yaml` works the same from any shell, CI
//! runners and Windows included.

use std::path::{Path, PathBuf};

/// The files `args` name. A pattern (`*`, `?` in the file name) the shell did not expand is
/// matched here, in sorted order; one that matches nothing is returned in `unmatched` (a
/// folder with no pipelines yet is not an error by itself).
pub fn expand(args: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut unmatched = Vec::new();
    for arg in args {
        let name = arg.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if arg.exists() || !(name.contains('*') || name.contains('?')) {
            files.push(arg.clone());
            continue;
        }
        let dir = match arg.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| matches(name, n))
            })
            .map(|p| match arg.parent() {
                Some(d) if !d.as_os_str().is_empty() => p,
                _ => PathBuf::from(p.file_name().unwrap_or_default()),
            })
            .collect();
        if found.is_empty() {
            unmatched.push(arg.clone());
        }
        found.sort();
        files.extend(found);
    }
    (files, unmatched)
}

/// Shell-style matching of one file name: `*` any run of characters, `?` one character.
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_like_a_shell() {
        assert!(matches("*.yaml", "contacts.yaml"));
        assert!(matches("c*s.y?ml", "contacts.yaml"));
        assert!(!matches("*.yaml", "contacts.yml"));
        assert!(!matches("*.yaml", ".yaml.bak"));
    }
}
