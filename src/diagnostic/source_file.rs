//! The text of a pipeline file, with the index that turns byte offsets into
//! line and column numbers.

/// A pipeline file's name and contents.
#[derive(Clone, Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    /// Byte offset at which each line starts; the first is always 0.
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file called `name` (as the user wrote its path) holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The path as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole contents.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// One-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let file = SourceFile::new("p.yaml", "a: 1\nb: 对账 x\n");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(5), (2, 1));
        assert_eq!(file.line_col(15), (2, 7));
        assert_eq!(file.line_col(999), (3, 1));
    }
}
