//! A diff of two sequences, for showing what a test expected against what
//! happened.

/// One line of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a, A, B> {
    /// In both.
    Same(&'a A, &'a B),
    /// Expected, but did not happen.
    Missing(&'a A),
    /// Happened, but not expected.
    Extra(&'a B),
}

/// The changes from `expected` to `actual`, items paired by `same`: a
/// longest common subsequence, so one wrong item shows as one pair of lines
/// rather than everything after it.
pub(crate) fn diff<'a, A, B>(
    expected: &'a [A],
    actual: &'a [B],
    same: impl Fn(&A, &B) -> bool,
) -> Vec<Change<'a, A, B>> {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(&expected[i], &actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut changes) = (0, 0, Vec::with_capacity(n.max(m)));
    while i < n || j < m {
        if i < n && j < m && same(&expected[i], &actual[j]) {
            changes.push(Change::Same(&expected[i], &actual[j]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            changes.push(Change::Missing(&expected[i]));
            i += 1;
        } else {
            changes.push(Change::Extra(&actual[j]));
            j += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(expected: &[&str], actual: &[&str]) -> Vec<String> {
        diff(expected, actual, |a, b| a == b)
            .into_iter()
            .map(|change| match change {
                Change::Same(a, _) => format!("  {a}"),
                Change::Missing(a) => format!("- {a}"),
                Change::Extra(b) => format!("+ {b}"),
            })
            .collect()
    }

    #[test]
    fn one_change_is_one_pair() {
        assert_eq!(
            show(&["a", "b", "c"], &["a", "x", "c"]),
            ["  a", "- b", "+ x", "  c"]
        );
    }

    #[test]
    fn missing_and_extra_at_the_ends() {
        assert_eq!(show(&["a", "b"], &["b", "c"]), ["- a", "  b", "+ c"]);
        assert_eq!(show(&[], &["a"]), ["+ a"]);
        assert_eq!(show(&["a"], &[]), ["- a"]);
    }
}
