//! The workspace's shape: dependencies point down the layers (ARCHITECTURE.md), and no crate's
//! top-level modules import each other in a cycle. Both read the sources, so a change that
//! breaks either fails here with the names to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each crate's layer: a crate (its tests and benches included) may depend only on crates of a
/// lower layer.
const LAYERS: [(&str, u32); 15] = [
    ("vigil-core", 0),
    ("vigil-analysis", 1),
    ("vigil-store", 1),
    ("vigil-ingest", 1),
    ("vigil-deploy", 1),
    ("vigil-p2p", 1),
    ("vigil-guard", 2),
    ("vigil-learn", 2),
    ("vigil-notify", 2),
    ("vigil-agent", 2),
    ("vigil-executor", 3),
    ("vigil-onboarding", 3),
    ("vigil-web", 4),
    ("vigil-server", 5),
    ("vigil", 6),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crates folder")
        .to_path_buf()
}

fn workspace_crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = fs::read_dir(crates_dir())
        .expect("the crates folder is readable")
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

fn layer_of(name: &str) -> Option<u32> {
    LAYERS
        .iter()
        .find(|(crate_name, _)| *crate_name == name)
        .map(|(_, layer)| *layer)
}

/// The package name and the workspace crates a manifest depends on, in any dependency table.
fn manifest_dependencies(manifest: &str) -> (String, Vec<String>) {
    let mut name = String::new();
    let mut section = String::new();
    let mut dependencies = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            name = value.trim().trim_matches('"').to_string();
        }
        let dependency = key.split('.').next().unwrap_or(key);
        if section.ends_with("dependencies") && dependency.starts_with("vigil") {
            dependencies.push(dependency.to_string());
        }
    }
    (name, dependencies)
}

/// What is wrong with a crate's dependencies on other workspace crates.
fn wrong_dependencies(name: &str, dependencies: &[String]) -> Vec<String> {
    let Some(layer) = layer_of(name) else {
        return vec![format!("{name} has no layer: add it to LAYERS")];
    };
    let mut wrong = Vec::new();
    for dependency in dependencies {
        match layer_of(dependency) {
            Some(below) if below < layer => {}
            Some(_) => wrong.push(format!("{name} depends on {dependency}, not below it")),
            None => wrong.push(format!("{dependency} (used by {name}) has no layer")),
        }
    }
    wrong
}

#[test]
fn dependencies_point_down_the_layers() {
    let mut wrong = Vec::new();
    for crate_path in workspace_crates() {
        let manifest = fs::read_to_string(crate_path.join("Cargo.toml")).expect("a manifest");
        let (name, dependencies) = manifest_dependencies(&manifest);
        wrong.extend(wrong_dependencies(&name, &dependencies));
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_finds_a_dependency_up_or_sideways() {
    let manifest = "[package]\nname = \"vigil-guard\"\n\n[dependencies]\nvigil-core.workspace = true\nvigil-web = { path = \"../vigil-web\" }\n\n[dev-dependencies]\nvigil-notify.workspace = true\n";
    let (name, dependencies) = manifest_dependencies(manifest);
    assert_eq!(name, "vigil-guard");
    assert_eq!(dependencies, ["vigil-core", "vigil-web", "vigil-notify"]);
    assert_eq!(
        wrong_dependencies(&name, &dependencies),
        [
            "vigil-guard depends on vigil-web, not below it",
            "vigil-guard depends on vigil-notify, not below it"
        ]
    );
    assert!(wrong_dependencies("vigil-notify", &["vigil-store".to_string()]).is_empty());
}

fn rust_files(folder: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The top-level module a source file belongs to, or `None` for the crate root.
fn top_module(source: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(source).expect("a file under src");
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let module = first.trim_end_matches(".rs").to_string();
    let root = ["lib", "main"].contains(&module.as_str()) && relative.components().count() == 1;
    (!root).then_some(module)
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The identifier at the start of `text`.
fn leading_identifier(text: &str) -> &str {
    let end = text
        .bytes()
        .position(|byte| !is_identifier_byte(byte))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first path segment of each item in a `{...}` group (`{a, b::c, d::{e}}`: a, b, d).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (position, character) in group.char_indices() {
        match character {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            _ if item_start && !character.is_whitespace() => {
                item_start = false;
                heads.push(leading_identifier(&group[position..]).to_string());
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules named by `crate::` paths in code (comment lines left out); a group
/// may run over several lines.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let without_comments: Vec<&str> = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect();
    let text = without_comments.join("\n");
    let mut named = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(found) = rest.find("crate::") {
        let preceded_by_identifier = found > 0 && is_identifier_byte(rest.as_bytes()[found - 1]);
        let after = &rest[found + "crate::".len()..];
        if !preceded_by_identifier {
            if let Some(group) = after.strip_prefix('{') {
                named.extend(group_heads(group));
            } else {
                named.insert(leading_identifier(after).to_string());
            }
        }
        rest = after;
    }
    named
}

/// Imports between one crate's top-level modules: module -> modules it names.
fn module_graph(crate_path: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let source = crate_path.join("src");
    let mut files = Vec::new();
    rust_files(&source, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|file| top_module(&source, file))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top_module(&source, file) else {
            continue;
        };
        let code = fs::read_to_string(file).expect("a source file");
        let targets = graph.entry(module.clone()).or_default();
        for named in crate_paths(&code) {
            if named != module && modules.contains(&named) {
                targets.insert(named);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan's algorithm), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'graph> {
        graph: &'graph BTreeMap<String, BTreeSet<String>>,
        next_index: usize,
        index: BTreeMap<&'graph str, usize>,
        low: BTreeMap<&'graph str, usize>,
        stack: Vec<&'graph str>,
        on_stack: BTreeSet<&'graph str>,
        found: Vec<Vec<String>>,
    }
    impl<'graph> Search<'graph> {
        fn visit(&mut self, module: &'graph str) {
            self.index.insert(module, self.next_index);
            self.low.insert(module, self.next_index);
            self.next_index += 1;
            self.stack.push(module);
            self.on_stack.insert(module);
            let targets = self.graph.get(module).into_iter().flatten();
            for target in targets {
                if !self.index.contains_key(target.as_str()) {
                    self.visit(target);
                    let lowest = self.low[module].min(self.low[target.as_str()]);
                    self.low.insert(module, lowest);
                } else if self.on_stack.contains(target.as_str()) {
                    let lowest = self.low[module].min(self.index[target.as_str()]);
                    self.low.insert(module, lowest);
                }
            }
            if self.low[module] != self.index[module] {
                return;
            }
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(member);
                component.push(member.to_string());
                if member == module {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                self.found.push(component);
            }
        }
    }
    let mut search = Search {
        graph,
        next_index: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for module in graph.keys() {
        if !search.index.contains_key(module.as_str()) {
            search.visit(module);
        }
    }
    search.found
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut found = BTreeSet::new();
    for crate_path in workspace_crates() {
        let name = crate_path
            .file_name()
            .expect("a crate folder")
            .to_string_lossy()
            .to_string();
        for cycle in cycles(&module_graph(&crate_path)) {
            found.insert(format!("{name}: {}", cycle.join(", ")));
        }
    }
    assert!(
        found.is_empty(),
        "module cycles (each set imports itself round through crate:: paths):\n{found:#?}"
    );
}

#[test]
fn the_checker_finds_a_cycle_and_group_imports() {
    assert_eq!(
        crate_paths("use crate::{\n    alpha,\n    beta::{Gamma, delta}};\nlet x = crate::epsilon::f();\n// crate::zeta\nmy_crate::eta"),
        BTreeSet::from(["alpha", "beta", "epsilon"].map(String::from))
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(module, targets)| {
        (
            module.to_string(),
            targets.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}
