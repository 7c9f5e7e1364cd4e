//! Tidy check over the source tree: inside each crate, no two modules import each other. A module is a
//! file under `src/` (a directory's module is its `mod.rs` or the file beside it); its imports are the
//! `crate::…`, `super::…` and `self::…` paths it names outside its tests. Two modules that reference each
//! other — two top-level modules through any of their files, or two files — are a cycle: what both need
//! belongs in the lower one, or the lower one takes a trait.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{rust_files, workspace_root};

/// The crates checked.
const CRATES: [&str; 5] = ["domain", "projections", "replay", "api", "bench"];

/// The module path of a file under `src` (`identity/mod.rs` → `["identity"]`; `lib.rs` → `[]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn is_test_module(module: &[String]) -> bool {
    module
        .iter()
        .any(|p| p == "tests" || p == "test" || p.ends_with("_tests"))
}

/// The text of a file without its comments and its inline `#[cfg(test)]` module (the last thing in a
/// file; a test module in a file of its own is left out by its name).
fn code_of(text: &str) -> String {
    let inline_tests = text
        .match_indices("#[cfg(test)]\nmod ")
        .find(|(at, marker)| {
            let rest = &text[at + marker.len()..];
            let name = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[name..].trim_start().starts_with('{')
        });
    let text = match inline_tests {
        Some((at, _)) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths (resolved from `module`) that `code` names through `crate::`, `super::` or
/// `self::`, braces of `use` trees opened one level at a time.
fn references(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            // A whole word only (not `my_crate::`).
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let path = read_path(&code[at..]);
            for path in path {
                found.push(resolve(&path, module));
            }
        }
    }
    found
}

/// The paths at the start of `text` (`crate::a::{b, c::d}` → `crate::a::b`, `crate::a::c::d`).
fn read_path(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        rest = &rest[end..];
        let Some(next) = rest.strip_prefix("::") else {
            return vec![segments];
        };
        rest = next.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(item);
            return out
                .iter()
                .map(|item| item.trim())
                .filter(|item| !item.is_empty())
                .flat_map(|item| {
                    read_path(item).into_iter().map(|tail| {
                        let mut path = segments.clone();
                        path.extend(tail);
                        path
                    })
                })
                .collect();
        }
    }
    vec![segments]
}

/// A path as `crate::`, `super::` or `self::` names it from `module`, made absolute (without `crate`).
fn resolve(path: &[String], module: &[String]) -> Vec<String> {
    let mut base: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self") => {
            base = module.to_vec();
            rest = &path[1..];
        }
        _ => {
            base = module.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    base
}

/// The pairs of modules of one crate that import each other: `(a, b)` with `a < b`, as `a/b` paths.
fn cycles(crate_dir: &Path) -> BTreeSet<(String, String)> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .into_iter()
        .map(|f| (module_of(&src, &f), f))
        .filter(|(m, _)| !is_test_module(m))
        .collect();
    // The longest module a path lies in.
    let owner = |path: &[String]| {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| modules.contains_key(prefix))
    };
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for (module, file) in &modules {
        let code = code_of(&fs::read_to_string(file).expect("a readable source"));
        for path in references(&code, module) {
            if let Some(target) = owner(&path) {
                if &target != module {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    let mut pairs = BTreeSet::new();
    let top: BTreeSet<(String, String)> = edges
        .iter()
        .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a[0] != b[0])
        .map(|(a, b)| (a[0].clone(), b[0].clone()))
        .collect();
    for (a, b) in &top {
        if a < b && top.contains(&(b.clone(), a.clone())) {
            pairs.insert((a.clone(), b.clone()));
        }
    }
    for (a, b) in &edges {
        let nested = a.starts_with(b) || b.starts_with(a);
        if a < b && !nested && edges.contains(&(b.clone(), a.clone())) {
            pairs.insert((a.join("/"), b.join("/")));
        }
    }
    pairs
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let root = workspace_root();
    let mut found = BTreeSet::new();
    for name in CRATES {
        for (a, b) in cycles(&root.join(name)) {
            found.insert((name.to_owned(), a, b));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other (crate, module, module): {found:?} — move what both need to the \
         lower one, or let the lower one take a trait"
    );
}

#[test]
fn paths_are_read_through_use_trees_and_resolved_from_the_module() {
    let module = vec!["identity".to_owned(), "batch".to_owned()];
    let code = "use crate::evaluation::{derive::{self, Derived}, ProfileFacts};\n\
                use super::model::Step;\nfn f() { crate::jobs::pending(); }";
    let found: BTreeSet<String> = references(code, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "evaluation::derive",
        "evaluation::derive::Derived",
        "evaluation::ProfileFacts",
        "identity::model::Step",
        "jobs::pending",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(found, expected);
    assert_eq!(
        code_of("use crate::a; // crate::b\n#[cfg(test)]\nmod tests { use crate::c; }"),
        "use crate::a; "
    );
    assert_eq!(
        code_of("#[cfg(test)]\nmod checks;\nuse crate::a;"),
        "#[cfg(test)]\nmod checks;\nuse crate::a;",
        "a test module in a file of its own leaves the rest"
    );
}
