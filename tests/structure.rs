//! The house's one rule, checked: data and imports flow one way. Every path a file of `src/`
//! names (`use` trees, grouped or nested, and paths in code) is resolved against the file's own
//! module (`crate::`, `super::`, `super::super::`, `self::`) to an edge from its top-level module
//! to another; the graph must have no cycle (sources never import config, events never import
//! light, …). Code under `#[cfg(test)]` does not count; `src/main.rs` is the binary and may use
//! anything. The source is parsed (syn), so no spelling of a path is invisible, also inside macro
//! calls (`format!`, `tokio::select!`, `info!`: their tokens are read for `crate::…` and
//! `super::…` paths). The same holds one level down: the modules inside each top-level module
//! (`http::auth`, `source::ffmpeg`) import each other one way too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use syn::visit::Visit;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

/// The paths one file's code names, resolved from its module path to full paths from the crate
/// root (`["outputs", "http", "auth", "Guard"]`): modules, then maybe an item.
struct Names<'a> {
    /// The module the code is in (`["source", "ffmpeg", "args"]`), inline modules pushed.
    module: Vec<String>,
    found: &'a mut BTreeSet<Vec<String>>,
}

impl Names<'_> {
    /// Resolve a path's leading segments; record its top-level module.
    fn resolve(&mut self, segments: &[String]) {
        let mut at: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") | Some("self") => self.module.clone(),
            _ => return,
        };
        for s in segments {
            match s.as_str() {
                "crate" | "self" => {}
                "super" => {
                    at.pop();
                }
                _ => at.push(s.clone()),
            }
        }
        if !at.is_empty() {
            self.found.insert(at);
        }
    }

    /// `crate::…`, `super::…` and `self::…` paths among a macro call's tokens.
    fn macro_tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let mut flat = Vec::new();
        fn flatten(t: proc_macro2::TokenStream, out: &mut Vec<proc_macro2::TokenTree>) {
            for tt in t {
                match tt {
                    proc_macro2::TokenTree::Group(g) => {
                        out.push(proc_macro2::TokenTree::Punct(proc_macro2::Punct::new(
                            ';',
                            proc_macro2::Spacing::Alone,
                        )));
                        flatten(g.stream(), out);
                    }
                    other => out.push(other),
                }
            }
        }
        flatten(tokens, &mut flat);
        let ident = |t: &proc_macro2::TokenTree| match t {
            proc_macro2::TokenTree::Ident(i) => Some(i.to_string()),
            _ => None,
        };
        let colon = |t: Option<&proc_macro2::TokenTree>| matches!(t, Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ':');
        let mut i = 0;
        while i < flat.len() {
            let starts = ident(&flat[i]).is_some_and(|s| s == "crate" || s == "super" || s == "self")
                && !(i >= 2 && colon(flat.get(i - 1)) && colon(flat.get(i - 2)));
            if !starts {
                i += 1;
                continue;
            }
            let mut segments = Vec::new();
            while let Some(s) = flat.get(i).and_then(ident) {
                segments.push(s);
                if colon(flat.get(i + 1)) && colon(flat.get(i + 2)) {
                    i += 3;
                } else {
                    i += 1;
                    break;
                }
            }
            if segments.len() > 1 {
                self.resolve(&segments);
            }
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(m) => &m.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(c) => &c.attrs,
            _ => return syn::visit::visit_item(self, i),
        };
        if is_test_only(attrs) {
            return;
        }
        match i {
            syn::Item::Mod(m) if m.content.is_some() => {
                self.module.push(m.ident.to_string());
                syn::visit::visit_item_mod(self, m);
                self.module.pop();
            }
            syn::Item::Use(u) => self.use_tree(&mut Vec::new(), &u.tree),
            _ => syn::visit::visit_item(self, i),
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.macro_tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, p);
    }
}

/// A file's module path: `src/http/auth.rs` is `["http", "auth"]`, `src/http/mod.rs` `["http"]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The paths (from the crate root) `text`, the code of the file at `module`, names.
fn names_in(text: &str, module: Vec<String>) -> BTreeSet<Vec<String>> {
    let file = syn::parse_file(text).expect("the source parses");
    let mut found = BTreeSet::new();
    let mut v = Names {
        module,
        found: &mut found,
    };
    v.visit_file(&file);
    found
}

/// Every file of `src/` (but main.rs and lib.rs): its module path and the modules it names.
fn files_and_names() -> Vec<(Vec<String>, BTreeSet<Vec<String>>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let module = module_of(f.strip_prefix(&src).unwrap());
        if module[0] == "main" || module[0] == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        out.push((module.clone(), names_in(&text, module)));
    }
    out
}

/// Top-level module → the other top-level modules it names.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, names) in files_and_names() {
        let top = module[0].clone();
        let deps = graph.entry(top.clone()).or_default();
        deps.extend(names.into_iter().map(|n| n[0].clone()).filter(|n| *n != top));
    }
    graph
}

/// For each module with modules inside, at every depth: its children → the sibling children
/// they name (a mod.rs's own code, shared by its children, is not a sibling; a name that is an
/// item rather than a module is a node without edges, so it closes no cycle).
fn sibling_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, names) in files_and_names() {
        for depth in 1..module.len() {
            let (parent, me) = (&module[..depth], &module[depth]);
            let graph = graphs.entry(parent.join("::")).or_default();
            let deps = graph.entry(me.clone()).or_default();
            for n in &names {
                if n.len() > depth && n[..depth] == *parent && n[depth] != *me {
                    deps.insert(n[depth].clone());
                }
            }
        }
    }
    graphs
}

#[test]
fn every_spelling_of_a_path_is_an_edge_and_test_code_is_not() {
    let code = "use crate::{alpha, beta::X};\n\
                use super::super::super::gamma::Y;\n\
                fn f() { crate::delta::go(); super::sibling::z(); }\n\
                mod inner { use super::super::super::super::epsilon; use super::super::kappa; }\n\
                #[cfg(test)]\nmod tests { use crate::hidden; }\n\
                #[cfg(test)]\nfn helper() { crate::hidden_too::x(); }\n\
                fn after() { crate::zeta::y(); }\n";
    let found: BTreeSet<String> = names_in(code, vec!["source".into(), "ffmpeg".into(), "args".into()])
        .into_iter()
        .map(|n| n[0].clone())
        .collect();
    // super::sibling and inner's super::super::kappa are inside `source`.
    let want: BTreeSet<String> = ["alpha", "beta", "gamma", "delta", "source", "epsilon", "zeta"]
        .map(String::from)
        .into();
    assert_eq!(found, want);
}

#[test]
fn paths_inside_macro_calls_are_edges_too() {
    let code = "fn f() { tracing::info!(\"{}\", crate::alpha::name()); \
                tokio::select! { _ = super::beta::wait() => {} } \
                let _ = format!(\"{:?}\", self::gamma::X); other::crate_like::y(); }\n";
    let found = names_in(code, vec!["http".into(), "api".into()]);
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let want: BTreeSet<Vec<String>> = [
        path(&["alpha", "name"]),
        path(&["http", "beta", "wait"]),
        path(&["http", "api", "gamma", "X"]),
    ]
    .into();
    assert_eq!(found, want, "self::gamma is inside http::api");
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = import_graph();
    assert!(graph.len() > 10, "the source tree was read: {graph:?}");
    assert!(graph["daemon"].contains("registry"), "edges are found: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\ngraph: {graph:#?}", cycle.join(" → "));
    }
}

#[test]
fn no_import_cycle_between_the_modules_inside_each_module() {
    let graphs = sibling_graphs();
    assert!(graphs["outputs::http"].len() > 5, "{graphs:?}");
    assert!(graphs["outputs"].contains_key("rtsp"), "{graphs:?}");
    for (parent, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            panic!(
                "import cycle inside {parent}: {}\ngraph: {graph:#?}",
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn sources_never_see_the_configuration() {
    let graph = import_graph();
    assert!(!graph["source"].contains("config"), "{:?}", graph["source"]);
    assert!(
        graph["config"].contains("source"),
        "config validates into the sources' options"
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default();
    assert_eq!(find_cycle(&g), None);
    g.get_mut("c").unwrap().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
