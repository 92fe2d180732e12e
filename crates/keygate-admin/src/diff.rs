// A line diff of two config documents (exports are stably ordered, so a line diff reads like a
// git diff of the file). Common head and tail are skipped; the middle is an LCS, bounded in size.

/// Most lines of each side's changed middle compared with LCS (keeps memory ≤ ~32 MB).
const MAX_MIDDLE: usize = 4000;

/// `-`/`+`/` ` prefixed lines from `old` to `new`, with up to `context` unchanged lines around
/// each change and `@@` separators between hunks. Empty when the documents are equal.
pub fn line_diff(old: &str, new: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..].iter().rev().zip(b[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    if am.is_empty() && bm.is_empty() {
        return Vec::new();
    }
    // Full edit script over the whole documents: (tag, line).
    let mut ops: Vec<(char, &str)> = a[..head].iter().map(|l| (' ', *l)).collect();
    if am.len() > MAX_MIDDLE || bm.len() > MAX_MIDDLE {
        ops.extend(am.iter().map(|l| ('-', *l)));
        ops.extend(bm.iter().map(|l| ('+', *l)));
    } else {
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u16; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((' ', am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                // Removals before additions, as diff(1) prints them.
                ops.push(('-', am[i]));
                i += 1;
            } else {
                ops.push(('+', bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - tail..].iter().map(|l| (' ', *l)));
    // Keep changes and their context.
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, (t, _))| *t != ' ').map(|(k, _)| k).collect();
    let mut keep = vec![false; ops.len()];
    for &k in &changed {
        for x in keep.iter_mut().take((k + context + 1).min(ops.len())).skip(k.saturating_sub(context)) {
            *x = true;
        }
    }
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for (k, (tag, line)) in ops.iter().enumerate() {
        if !keep[k] {
            continue;
        }
        if last.is_some_and(|l| l + 1 != k) {
            out.push("@@".to_string());
        }
        out.push(format!("{tag}{line}"));
        last = Some(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_show_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nC\nd\ne\nf\ng\nh\n";
        assert_eq!(line_diff(old, new, 1), [" b", "-c", "+C", " d", "@@", " g", "+h"]);
        assert!(line_diff(old, old, 3).is_empty());
        assert_eq!(line_diff("", "x\n", 3), ["+x"]);
        assert_eq!(line_diff("x\ny\n", "y\n", 0), ["-x"]);
        // A replaced run: all removals, then all additions.
        assert_eq!(line_diff("a\nb\nc\nz\n", "a\nB\nC\nz\n", 0), ["-b", "-c", "+B", "+C"]);
        // Over the LCS bound the middle is shown as one replacement, never truncated.
        let big_old: String = (0..MAX_MIDDLE + 1).map(|i| format!("o{i}\n")).collect();
        let big_new: String = (0..MAX_MIDDLE + 1).map(|i| format!("n{i}\n")).collect();
        let d = line_diff(&big_old, &big_new, 0);
        assert_eq!(d.len(), 2 * (MAX_MIDDLE + 1));
        assert!(d[0].starts_with('-') && d[d.len() - 1].starts_with('+'));
    }
}
