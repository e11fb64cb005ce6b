//! The module graph runs one way: each top-level module under `src/` may
//! import (`crate::x`) only modules of a lower layer, so data and imports
//! both flow client → gateway → router → operation → twopc → shard → state machine →
//! storage, and nothing below can reach back up (an internal answer cannot
//! type-check its way to a socket). A new module must be given a layer here.
//! `../shared/tools/module-cycles` gives the same verdict on cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top to bottom. A module may import only from layers below its own.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["engine"],
    &["client", "load"],
    &["iso8583", "http"],
    &["gateway"],
    &["router"],
    &["operation"],
    &["twopc"],
    &["shard"],
    &["state_machine"],
    &[
        "idempotency",
        "ledger",
        "auth",
        "settlement",
        "command_log",
        "order",
    ],
    &["storage", "telemetry", "reply"],
    &["protocol"],
    &["config", "ids", "card", "encoding", "clock"],
    &["pin"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/module_graph.rs"))
}

/// Module → the crate modules it names, outside comments and unit tests.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let first = relative.components().next().expect("a component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let names = graph.entry(module.clone()).or_default();
            for line in code
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
            {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        names.insert(name);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn every_import_points_down_the_layers() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() >= LAYERS.iter().map(|l| l.len()).sum::<usize>() - 1);
    let mut upward = Vec::new();
    for (module, names) in &graph {
        for name in names {
            if layer_of(name) <= layer_of(module) {
                upward.push(format!("{module} -> {name}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up or sideways: {upward:?}"
    );
}
