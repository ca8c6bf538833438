//! The crate's top-level modules import one another without a cycle, so that each can be read
//! (and moved) from the bottom up: the app settings below the intake and the puller, onboarding
//! beside them.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules each one names through `crate::`, by module.
fn module_imports(source_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![source_dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().and_then(|extension| extension.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(source_dir).unwrap();
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let named = imports.entry(top.clone()).or_default();
            named.extend(
                crate_paths(&text)
                    .into_iter()
                    .filter(|module| *module != top),
            );
        }
    }
    imports
}

/// The first segment of every `crate::` path outside comments (`crate::{a::X, b}` names both).
fn crate_paths(text: &str) -> Vec<String> {
    let code_lines = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"));
    let mut found = Vec::new();
    for line in code_lines {
        for (_, after) in line
            .match_indices("crate::")
            .map(|(at, _)| line.split_at(at + 7))
        {
            let listed = match after.strip_prefix('{') {
                Some(inside) => inside.split('}').next().unwrap_or_default(),
                None => after,
            };
            for item in listed.split(',') {
                let segment: String = item
                    .trim()
                    .chars()
                    .take_while(|character| character.is_alphanumeric() || *character == '_')
                    .collect();
                if segment.chars().next().is_some_and(char::is_lowercase) {
                    found.push(segment);
                }
            }
        }
    }
    found
}

/// A cycle through `start`, as the modules along it, if there is one.
fn cycle_from(start: &str, imports: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in imports.get(&module).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_itself_through_others() {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let imports = module_imports(&source_dir);
    assert!(imports.contains_key("intake"), "{imports:?}");
    let cycles: Vec<String> = imports
        .keys()
        .filter_map(|module| cycle_from(module, &imports))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}
