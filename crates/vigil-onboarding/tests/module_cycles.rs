//! The modules of onboarding, and of the guard it was split from, import one another without a
//! cycle, so that each can be read (and moved) from the bottom up: the app settings below the
//! intake and the puller, discovery's parts below the matching that runs them.
//!
//! A module's imports are the paths it names that start with `crate::`, `super::` or one of
//! its own child modules, outside comments; each is taken to the deepest module it reaches.
//! The crate root only declares and re-exports, so paths to it are left out.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside its crate: `["discover", "params"]`.
type Module = Vec<String>;

/// Every source file of a crate, by module.
fn modules(source_dir: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
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
            let relative = path.strip_prefix(source_dir).unwrap().with_extension("");
            let mut module: Module = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The paths a line of code names, each as its segments (`crate::a::{b, c::D}` names
/// `crate::a::b` and `crate::a::c::D`).
fn paths_in(line: &str) -> Vec<Vec<String>> {
    let characters: Vec<char> = line.chars().collect();
    let is_word = |character: char| character.is_alphanumeric() || character == '_';
    let mut paths = Vec::new();
    let mut position = 0;
    while position < characters.len() {
        let starts_path = is_word(characters[position])
            && (position == 0
                || !(is_word(characters[position - 1]) || characters[position - 1] == ':'));
        if !starts_path {
            position += 1;
            continue;
        }
        let mut end = position;
        while end < characters.len() && (is_word(characters[end]) || characters[end] == ':') {
            end += 1;
        }
        let text: String = characters[position..end].iter().collect();
        let prefix: Vec<String> = text
            .split("::")
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect();
        if !text.contains("::") {
            position = end;
            continue;
        }
        let group_opens = end < characters.len() && characters[end] == '{' && text.ends_with("::");
        if !group_opens {
            paths.push(prefix);
            position = end;
            continue;
        }
        let closing = characters[end..]
            .iter()
            .position(|character| *character == '}')
            .map_or(characters.len(), |offset| end + offset);
        let group: String = characters[end + 1..closing].iter().collect();
        for item in group.split(',') {
            let mut path = prefix.clone();
            path.extend(
                item.trim()
                    .split("::")
                    .map(|segment| segment.trim().to_owned())
                    .filter(|segment| segment.chars().all(is_word) && !segment.is_empty()),
            );
            paths.push(path);
        }
        position = closing;
    }
    paths
}

/// The module a path named from `from` reaches, if it is one of the crate's own.
fn target(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let first = path.first()?;
    let is_child = |name: &str| {
        let mut child = from.clone();
        child.push(name.to_owned());
        known.contains(&child)
    };
    let mut absolute: Module = match first.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => from.clone(),
        child if is_child(child) => from.clone(),
        _ => return None,
    };
    let mut rest = path.iter().skip(usize::from(first == "crate"));
    for segment in rest.by_ref() {
        match segment.as_str() {
            "super" => {
                absolute.pop();
            }
            "self" => {}
            _ => {
                absolute.push(segment.clone());
                break;
            }
        }
    }
    absolute.extend(rest.cloned());
    while !absolute.is_empty() && !known.contains(&absolute) {
        absolute.pop();
    }
    (!absolute.is_empty()).then_some(absolute)
}

/// Every module's imports of other modules of its crate.
fn imports(source_dir: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let files = modules(source_dir);
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let code_lines = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"));
        let reached: BTreeSet<Module> = code_lines
            .flat_map(paths_in)
            .filter_map(|named| target(module, &named, &known))
            .filter(|reached| reached != module)
            .collect();
        graph.insert(module.clone(), reached);
    }
    graph
}

/// A cycle through `start`, as the modules along it, if there is one.
fn cycle_from(start: &Module, graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    let mut stack = vec![vec![start.clone()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

fn cycles_of(source_dir: &Path) -> Vec<String> {
    let graph = imports(source_dir);
    graph
        .keys()
        .filter_map(|module| cycle_from(module, &graph))
        .map(|cycle| {
            let names: Vec<String> = cycle.iter().map(|module| module.join("::")).collect();
            names.join(" -> ")
        })
        .collect()
}

#[test]
fn the_reader_sees_imports_and_their_cycles() {
    let named = paths_in("use crate::a::{b, c::D}; let x = super::e::f(y); std::mem::take(z)");
    let expected: Vec<Vec<&str>> = vec![
        vec!["crate", "a", "b"],
        vec!["crate", "a", "c", "D"],
        vec!["super", "e", "f"],
        vec!["std", "mem", "take"],
    ];
    assert_eq!(named, expected);
    let module = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    let known: BTreeSet<Module> = ["apps", "apps::selector", "pull"]
        .into_iter()
        .map(module)
        .collect();
    let from_apps = |path: &str| target(&module("apps"), &module(path), &known);
    assert_eq!(
        from_apps("selector::normalize"),
        Some(module("apps::selector"))
    );
    assert_eq!(from_apps("crate::pull::Puller"), Some(module("pull")));
    assert_eq!(from_apps("std::mem"), None);
    let from_selector = target(&module("apps::selector"), &module("super::X"), &known);
    assert_eq!(from_selector, Some(module("apps")));
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (module("apps"), BTreeSet::from([module("pull")])),
        (module("pull"), BTreeSet::from([module("apps")])),
    ]
    .into_iter()
    .collect();
    assert!(cycle_from(&module("apps"), &graph).is_some());
}

#[test]
fn no_module_imports_itself_through_others() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in ["vigil-onboarding", "vigil-guard"] {
        let source_dir = crates.join(name).join("src");
        assert!(modules(&source_dir).len() > 5, "{name} has its sources");
        let cycles = cycles_of(&source_dir);
        assert!(cycles.is_empty(), "module cycles in {name}: {cycles:#?}");
    }
}
