//! Issue #20: "No function is over 70 lines". Every `fn` with a body under
//! `src/`, `loadtest/` and `benches/` (tests and helpers included) is at
//! most [`MAX_LINES`] lines long, counted from its `fn` line to its closing
//! brace, inclusive. There is no list of exceptions: a function that grows
//! past the limit is split where this test names it.
//!
//! The scan is a small lexer, not a parser: comments and the insides of
//! string, raw string and char literals are blanked first (so a brace in
//! them does not count), then each `fn <name>` is followed to the `{` that
//! opens its body, or to the `;` that ends a bodiless declaration (a trait
//! method's signature), and its body to the matching `}`. `the_counter_counts`
//! checks the scan itself on a sample, so that this test cannot pass by
//! finding nothing.

use std::path::{Path, PathBuf};

/// The longest a function may be, in lines.
const MAX_LINES: usize = 70;

/// The trees scanned, under the crate's root.
const ROOTS: [&str; 3] = ["src", "loadtest", "benches"];

#[test]
fn no_function_is_over_70_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scanned = 0;
    let mut too_long = Vec::new();
    for tree in ROOTS {
        for path in rust_files(&root.join(tree)) {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let shown = path.strip_prefix(root).unwrap_or(&path).display();
            for function in functions(&text) {
                scanned += 1;
                if function.lines > MAX_LINES {
                    too_long.push((
                        function.lines,
                        format!("{shown}:{}", function.line),
                        function,
                    ));
                }
            }
        }
    }
    // The crate has several hundred: a handful means the scan went wrong.
    assert!(
        scanned > 200,
        "only {scanned} functions found under {ROOTS:?}"
    );
    too_long.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let listed: Vec<String> = too_long
        .iter()
        .map(|(lines, at, function)| format!("  {at} {} {lines}", function.name))
        .collect();
    assert!(
        listed.is_empty(),
        "{} function(s) over {MAX_LINES} lines (issue #20); split them by meaning:\n{}",
        listed.len(),
        listed.join("\n")
    );
}

#[test]
fn the_counter_counts() {
    // Braces in strings, raw strings, chars and comments do not count; a
    // lifetime is not a char literal; `[u8; 2]` in a signature is not the
    // `;` of a declaration.
    let tricky = r##"fn tricky<'a>(x: [u8; 2], y: &'a str) -> &'static str {
    let _open = "{ {{ \" {";
    let _close = '}';
    let _raw = r#"}" }"#;
    // }
    /* { /* } */ */
    let _quote = '"';
    "}}"
}
"##;
    let sample = [
        "trait Shape {\n    fn declared(&self) -> [u8; 4];\n}\n",
        "type Pick = fn(u8) -> u8;\n",
        &function_of("seventy", 70),
        &function_of("seventy_one", 71),
        tricky,
        "fn after() {\n    let _ = b'{';\n}\n",
    ]
    .concat();
    let found: Vec<(String, usize, usize)> = functions(&sample)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    let expected = [
        ("seventy", 5, 70),
        ("seventy_one", 75, 71),
        ("tricky", 146, 9),
        ("after", 155, 3),
    ];
    let expected: Vec<(String, usize, usize)> = expected
        .into_iter()
        .map(|(name, line, lines)| (name.to_string(), line, lines))
        .collect();
    assert_eq!(found, expected);
    let over: Vec<String> = functions(&sample)
        .into_iter()
        .filter(|f| f.lines > MAX_LINES)
        .map(|f| f.name)
        .collect();
    assert_eq!(over, ["seventy_one"]);
}

/// A function `lines` long: its `fn` line, a body, its closing brace.
fn function_of(name: &str, lines: usize) -> String {
    let mut text = format!("fn {name}() {{\n");
    for i in 0..lines - 2 {
        text += &format!("    let _x{i} = {i};\n");
    }
    text + "}\n"
}

/// A function found in a file: its name, the line of its `fn` (1-based),
/// and its length in lines.
#[derive(Debug)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// The `.rs` files under `dir`, in order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every function with a body in `text`, nested ones included.
fn functions(text: &str) -> Vec<Function> {
    let code = code_only(text);
    let mut line_at = Vec::with_capacity(code.len());
    let mut line = 1;
    for &c in &code {
        line_at.push(line);
        if c == '\n' {
            line += 1;
        }
    }
    let mut found = Vec::new();
    for at in 0..code.len() {
        if !is_fn_keyword(&code, at) {
            continue;
        }
        let name: String = code[at + 2..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|&&c| is_ident(c))
            .collect();
        if name.is_empty() {
            continue; // a function pointer type, `fn(u8) -> u8`
        }
        let Some(open) = body_start(&code, at + 2) else {
            continue; // a declaration without a body
        };
        let close = matching_brace(&code, open);
        found.push(Function {
            name,
            line: line_at[at],
            lines: line_at[close] - line_at[at] + 1,
        });
    }
    found
}

/// Whether the keyword `fn`, followed by white space, starts at `at`.
fn is_fn_keyword(code: &[char], at: usize) -> bool {
    code[at..].starts_with(&['f', 'n'])
        && (at == 0 || !is_ident(code[at - 1]))
        && code.get(at + 2).is_some_and(|c| c.is_whitespace())
}

/// The `{` that opens the body of the function whose signature starts at
/// `from`, or `None` if a `;` ends it first (outside brackets: `[u8; 4]` is
/// a type).
fn body_start(code: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(from) {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '{' if depth == 0 => return Some(i),
            ';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The `}` that closes the `{` at `open` (the end of the text if none does).
fn matching_brace(code: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments and the insides of string and char literals
/// blanked to spaces; newlines are kept, so lines keep their numbers.
fn code_only(text: &str) -> Vec<char> {
    let source: Vec<char> = text.chars().collect();
    let mut code = source.clone();
    let mut i = 0;
    while i < source.len() {
        let (end, blank) = token_at(&source, i);
        if blank {
            for c in &mut code[i..end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
        }
        i = end;
    }
    code
}

/// The end of the comment, literal, identifier or other character that
/// starts at `i`, and whether it is blanked (a comment or a literal, its
/// delimiters included).
fn token_at(source: &[char], i: usize) -> (usize, bool) {
    let after = |end: usize| (end + 1).min(source.len());
    let next = source.get(i + 1).copied();
    match source[i] {
        '/' if next == Some('/') => {
            let end = (i..source.len()).find(|&k| source[k] == '\n');
            (end.unwrap_or(source.len()), true)
        }
        '/' if next == Some('*') => (block_comment_end(source, i), true),
        '"' => (after(string_end(source, i + 1)), true),
        '\'' => match char_literal_end(source, i) {
            Some(end) => (after(end), true),
            None => (i + 1, false), // a lifetime or a label
        },
        c if is_ident(c) => match raw_string_end(source, i) {
            Some(end) => (end, true),
            None => {
                let end = (i..source.len()).find(|&k| !is_ident(source[k]));
                (end.unwrap_or(source.len()), false)
            }
        },
        _ => (i + 1, false),
    }
}

/// The index after the `*/` that closes the block comment at `i` (block
/// comments nest).
fn block_comment_end(source: &[char], i: usize) -> usize {
    let (mut depth, mut k) = (0usize, i);
    while k + 1 < source.len() {
        match (source[k], source[k + 1]) {
            ('/', '*') => (depth, k) = (depth + 1, k + 2),
            ('*', '/') => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    source.len()
}

/// The index of the `"` that closes a string whose text starts at `from`.
fn string_end(source: &[char], from: usize) -> usize {
    let mut k = from;
    while k < source.len() {
        match source[k] {
            '\\' => k += 2,
            '"' => return k,
            _ => k += 1,
        }
    }
    source.len()
}

/// The index of the `'` closing a char literal opened at `i`, or `None`
/// if the `'` at `i` starts a lifetime or a label.
fn char_literal_end(source: &[char], i: usize) -> Option<usize> {
    match source.get(i + 1)? {
        '\\' => (i + 3..source.len()).find(|&k| source[k] == '\''),
        _ => (source.get(i + 2) == Some(&'\'')).then_some(i + 2),
    }
}

/// If a raw string (`r"…"`, `r#"…"#`, `br#"…"#`) starts at `i`, the
/// index after its closing quote and hashes.
fn raw_string_end(source: &[char], i: usize) -> Option<usize> {
    let r = if source[i] == 'b' { i + 1 } else { i };
    if source.get(r) != Some(&'r') {
        return None;
    }
    let hashes = source[r + 1..].iter().take_while(|&&c| c == '#').count();
    let quote = r + 1 + hashes;
    if source.get(quote) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (quote + 1..source.len())
        .find(|&k| source[k..].starts_with(&closing))
        .unwrap_or(source.len());
    Some((end + closing.len()).min(source.len()))
}
