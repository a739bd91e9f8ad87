//! Lines of files and of standard input, read on a thread of their own.
//!
//! A file source reads the file its path names, or every file its glob
//! matches in name order, one after another. Followed (`follow: true`), it
//! keeps reading the last file as it grows, like `tail -F`: when the file is
//! replaced (rotated: a new file at the path) or truncated, the rest of the
//! old one is read first, then the new one from its top; a new file that the
//! glob matches, sorting after the current one, is read next. A line is
//! complete at its line break; at the end of a followed file the rest is
//! held until the break arrives, and at the end of any other file it is the
//! file's last line.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes a line may hold; a longer line is malformed, and its first
/// [`MAX_LINE`] bytes are kept for the report.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Bytes read from a file at a time.
const READ_BUFFER: usize = 256 * 1024;

/// Where lines come from.
#[derive(Debug)]
pub(crate) enum Origin {
    /// These files, in this order.
    Files(Vec<PathBuf>),
    /// The file a path names, or the files a glob matches, followed as they
    /// grow and appear.
    Follow {
        /// The path or glob, resolved against the pipeline's directory.
        pattern: String,
        /// Whether `pattern` is a glob rather than one path.
        glob: bool,
    },
    /// Standard input.
    Stdin,
}

/// What the reader did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read a line: see [`Lines::line`].
    Line,
    /// Opened a file, which starts again at line 1.
    Started,
    /// Opened the file a resumed run starts in, past its lines already
    /// read.
    Resumed,
    /// About to wait for more input: the time to hand on what was read.
    Flush,
    /// At the end of a followed input; ask again after a pause.
    Waiting,
    /// No more input.
    End,
}

/// Reads lines, keeping track of where each one is.
pub(crate) struct Lines {
    origin: Origin,
    /// Files not yet opened, for [`Origin::Files`].
    queue: std::vec::IntoIter<PathBuf>,
    /// Files opened so far, for [`Origin::Follow`].
    seen: BTreeSet<PathBuf>,
    /// The file to open when the current one is done, for
    /// [`Origin::Follow`]: a new file at the same path, or the next match.
    then: Option<PathBuf>,
    /// Whether standard input was opened.
    stdin_opened: bool,
    open: Option<Open>,
    line: Line,
    /// Whether [`Step::Flush`] was given since the last line.
    flushed: bool,
    /// Bytes read so far, for progress.
    progress: Arc<AtomicU64>,
    /// Where a resumed run starts, until the file is opened.
    start: Option<Start>,
}

/// Where a resumed source starts reading: in this file, after this many
/// bytes, which held this many lines.
#[derive(Clone, Debug)]
pub(crate) struct Start {
    pub(crate) path: PathBuf,
    /// The file's head then: the file at the path now is the same file if
    /// it begins with the same bytes.
    pub(crate) head: Option<Head>,
    pub(crate) offset: u64,
    pub(crate) line: u64,
}

/// The line being read.
#[derive(Default)]
struct Line {
    /// Its text so far, without the line break.
    bytes: Vec<u8>,
    /// Whether it had more than [`MAX_LINE`] bytes.
    too_long: bool,
    /// Whether its end has not been read yet.
    partial: bool,
}

impl Line {
    /// Whether it holds no record: nothing but spaces, tabs and the like.
    fn is_blank(&self) -> bool {
        !self.too_long && self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

/// The file or stream being read.
struct Open {
    /// Its name in messages: the path, or `-` for standard input.
    name: Arc<str>,
    reader: BufReader<Box<dyn Read + Send>>,
    /// The path it was opened at, for a followed file.
    path: Option<PathBuf>,
    /// The identity of the file opened, to notice a new file at the path.
    id: Option<FileId>,
    /// The file again, to read its head without moving the reader; `None`
    /// for standard input.
    file: Option<File>,
    /// Its head, once it has [`HEAD`] bytes.
    head: Option<Head>,
    /// Bytes read from it.
    offset: u64,
    /// The number of the current line.
    number: u64,
    /// Whether it is read to its end and the next file may be opened.
    done: bool,
}

impl Lines {
    pub(crate) fn new(origin: Origin, progress: Arc<AtomicU64>) -> Self {
        let queue = match &origin {
            Origin::Files(files) => files.clone(),
            _ => Vec::new(),
        }
        .into_iter();
        Self {
            origin,
            queue,
            seen: BTreeSet::new(),
            then: None,
            stdin_opened: false,
            open: None,
            line: Line::default(),
            flushed: false,
            progress,
            start: None,
        }
    }

    /// Starts at `start` instead of the top: files before it (in name
    /// order) were read already.
    pub(crate) fn start_at(&mut self, start: Start) {
        match &self.origin {
            Origin::Files(_) => {
                let rest: Vec<PathBuf> = self
                    .queue
                    .by_ref()
                    .skip_while(|path| *path != start.path)
                    .collect();
                self.queue = rest.into_iter();
            }
            Origin::Follow { pattern, glob } => {
                if *glob {
                    for path in matches(pattern).unwrap_or_default() {
                        if path < start.path {
                            self.seen.insert(path);
                        }
                    }
                }
                self.then = Some(start.path.clone());
            }
            Origin::Stdin => return,
        }
        self.start = Some(start);
    }

    /// The first line of the file a resumed run starts in, when it starts
    /// past it: a CSV input's header.
    pub(crate) fn start_header(&self) -> Option<Vec<u8>> {
        let start = self.start.as_ref().filter(|start| start.offset > 0)?;
        let mut reader = BufReader::new(File::open(&start.path).ok()?);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).ok()?;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.starts_with(b"\xEF\xBB\xBF") {
            line.drain(..3);
        }
        Some(line)
    }

    /// The current line, without its line break: at most [`MAX_LINE`]
    /// bytes of it.
    pub(crate) fn line(&self) -> &[u8] {
        &self.line.bytes
    }

    /// Whether the current line was longer than [`MAX_LINE`].
    pub(crate) fn too_long(&self) -> bool {
        self.line.too_long
    }

    /// The name of the current file: its path, or `-` for standard input.
    pub(crate) fn file(&self) -> Arc<str> {
        self.open
            .as_ref()
            .map_or_else(|| Arc::from("-"), |open| open.name.clone())
    }

    /// The head of the current file as far as it is read: how a resumed
    /// run knows the file again. `None` for standard input, and where the
    /// system cannot read a file in place.
    pub(crate) fn head(&mut self) -> Option<Head> {
        let open = self.open.as_mut()?;
        if open.head.is_some() {
            return open.head;
        }
        let length = open.offset.min(HEAD);
        let head = head(open.file.as_ref()?, length)?;
        if length == HEAD {
            open.head = Some(head);
        }
        Some(head)
    }

    /// The byte offset just after the current line in its file.
    pub(crate) fn offset(&self) -> u64 {
        self.open.as_ref().map_or(0, |open| open.offset)
    }

    /// The one-based number of the current line in its file.
    pub(crate) fn number(&self) -> u64 {
        self.open.as_ref().map_or(0, |open| open.number)
    }

    /// Reads on: the next line, a new file, or a pause.
    ///
    /// # Errors
    ///
    /// A file that cannot be opened or read, with its name.
    pub(crate) fn next(&mut self) -> Result<Step, (Arc<str>, io::Error)> {
        loop {
            let Some(open) = &mut self.open else {
                return match self.open_next()? {
                    Some(true) => Ok(Step::Resumed),
                    Some(false) => Ok(Step::Started),
                    None if matches!(self.origin, Origin::Follow { .. }) => Ok(Step::Waiting),
                    None => Ok(Step::End),
                };
            };
            if open.done {
                self.open = None;
                continue;
            }
            if !self.line.partial {
                self.line.bytes.clear();
                self.line.too_long = false;
            }
            if matches!(self.origin, Origin::Stdin)
                && open.reader.buffer().is_empty()
                && !self.flushed
            {
                // Reading standard input may block for as long as the
                // writer likes.
                self.flushed = true;
                return Ok(Step::Flush);
            }
            let complete = read_line(open, &mut self.line, &self.progress)
                .map_err(|error| (open.name.clone(), error))?;
            if complete {
                self.line.partial = false;
                self.flushed = false;
                finish_line(open, &mut self.line.bytes);
                if self.line.is_blank() {
                    continue;
                }
                return Ok(Step::Line);
            }
            // At the end of the file, `line` holding what follows the last
            // line break.
            let rest = !self.line.bytes.is_empty() || self.line.too_long;
            let done = match &self.origin {
                Origin::Follow { pattern, glob } => {
                    let next = successor(open, pattern, *glob, &self.seen)
                        .map_err(|error| (open.name.clone(), error))?;
                    self.then = next;
                    self.then.is_some()
                }
                Origin::Files(_) | Origin::Stdin => true,
            };
            if !done {
                self.line.partial = rest;
                return Ok(Step::Waiting);
            }
            open.done = true;
            self.line.partial = false;
            if rest {
                // The last line of a file needs no line break.
                finish_line(open, &mut self.line.bytes);
                if !self.line.is_blank() {
                    return Ok(Step::Line);
                }
            }
        }
    }

    /// Opens the next file, if there is one now; says whether it is where
    /// a resumed run starts.
    fn open_next(&mut self) -> Result<Option<bool>, (Arc<str>, io::Error)> {
        let (path, follow) = match &self.origin {
            Origin::Files(_) => match self.queue.next() {
                Some(path) => (path, false),
                None => return Ok(None),
            },
            Origin::Stdin => {
                if std::mem::replace(&mut self.stdin_opened, true) {
                    return Ok(None);
                }
                self.open = Some(Open {
                    name: Arc::from("-"),
                    reader: BufReader::with_capacity(READ_BUFFER, Box::new(io::stdin())),
                    path: None,
                    id: None,
                    file: None,
                    head: None,
                    offset: 0,
                    number: 0,
                    done: false,
                });
                return Ok(Some(false));
            }
            Origin::Follow { pattern, glob } => {
                let next = match self.then.take() {
                    Some(path) => Some(path),
                    None if *glob => matches(pattern)
                        .map_err(|error| (Arc::from(pattern.as_str()), error))?
                        .into_iter()
                        .find(|path| !self.seen.contains(path)),
                    None => Some(PathBuf::from(pattern)).filter(|path| path.is_file()),
                };
                match next {
                    Some(path) => (path, true),
                    None => return Ok(None),
                }
            }
        };
        let name: Arc<str> = Arc::from(path.display().to_string());
        let file = match File::open(&path) {
            Ok(file) => file,
            // Gone between being listed and opened: a followed input waits
            // for it to come back.
            Err(error) if follow && error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err((name, error)),
        };
        let metadata = file.metadata().ok();
        let id = metadata.as_ref().and_then(file_id);
        let (mut file, mut offset, mut number, mut resumed) = (file, 0, 0, false);
        if let Some(start) = self.start.take_if(|start| start.path == path) {
            // A followed file that begins differently now, or shrank, was
            // replaced while the run was stopped: it is read from its top.
            let same = start
                .head
                .is_none_or(|(crc, length)| head(&file, u64::from(length)) == Some((crc, length)));
            if same && metadata.is_some_and(|m| m.len() >= start.offset) {
                io::Seek::seek(&mut file, io::SeekFrom::Start(start.offset))
                    .map_err(|error| (name.clone(), error))?;
                (offset, number, resumed) = (start.offset, start.line, true);
                self.progress.fetch_add(offset, Ordering::Relaxed);
            }
        }
        self.seen.insert(path.clone());
        let again = file.try_clone().ok();
        self.open = Some(Open {
            name,
            reader: BufReader::with_capacity(READ_BUFFER, Box::new(file)),
            path: follow.then_some(path),
            id,
            file: again,
            head: None,
            offset,
            number,
            done: false,
        });
        Ok(Some(resumed))
    }
}

/// Reads into `line` up to a line break (dropped) or the end of what can be
/// read now; says which.
fn read_line(open: &mut Open, line: &mut Line, progress: &AtomicU64) -> io::Result<bool> {
    loop {
        let buffer = match open.reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok(false);
        }
        let (chunk, complete) = match memchr::memchr(b'\n', buffer) {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        let room = MAX_LINE - line.bytes.len();
        if chunk.len() > room {
            line.bytes.extend_from_slice(&chunk[..room]);
            line.too_long = true;
        } else {
            line.bytes.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(complete);
        open.reader.consume(used);
        open.offset += used as u64;
        progress.fetch_add(used as u64, Ordering::Relaxed);
        if complete {
            return Ok(true);
        }
    }
}

/// Numbers a line read whole, and drops what is not part of its text: the
/// CR of a CR LF break, and a byte-order mark before the first line.
fn finish_line(open: &mut Open, line: &mut Vec<u8>) {
    open.number += 1;
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if open.number == 1 && line.starts_with(b"\xEF\xBB\xBF") {
        line.drain(..3);
    }
}

/// What to read after `open`, which is at its end for now: the file now at
/// its path if that is a new file or was truncated, or else the first file
/// the glob matches that sorts after it and was not read yet.
fn successor(
    open: &Open,
    pattern: &str,
    glob: bool,
    seen: &BTreeSet<PathBuf>,
) -> io::Result<Option<PathBuf>> {
    let Some(path) = &open.path else {
        return Ok(None);
    };
    if let Ok(metadata) = std::fs::metadata(path) {
        let replaced = file_id(&metadata).is_some_and(|id| Some(id) != open.id);
        if replaced || metadata.len() < open.offset {
            return Ok(Some(path.clone()));
        }
    }
    if !glob {
        return Ok(None);
    }
    Ok(matches(pattern)?
        .into_iter()
        .find(|candidate| candidate > path && !seen.contains(candidate)))
}

/// The files `pattern` matches, in name order.
pub(crate) fn matches(pattern: &str) -> io::Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a valid glob: {error}"),
        )
    })?;
    let mut files = Vec::new();
    for path in paths {
        let path = path.map_err(io::Error::from)?;
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// What tells one file from another at the same path.
type FileId = (u64, u64);

/// The CRC-32 of a file's first bytes, up to [`HEAD`], and how many: by
/// this a resumed run knows a file again. Device and inode numbers would
/// not do: an inode freed by a rotation is soon given to the next file, and
/// a volume mounted again may get another device number.
pub(crate) type Head = (u32, u32);

/// The most bytes a [`Head`] covers.
const HEAD: u64 = 1024;

/// The head of the first `length` bytes of `file`, read in place (the
/// reader's position stays); `None` when it has fewer.
#[cfg(unix)]
pub(super) fn head(file: &File, length: u64) -> Option<Head> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0; HEAD as usize];
    let bytes = &mut bytes[..usize::try_from(length.min(HEAD)).ok()?];
    file.read_exact_at(bytes, 0).ok()?;
    Some((
        crate::checkpoint::encoding::crc32(&[bytes]),
        u32::try_from(bytes.len()).ok()?,
    ))
}

#[cfg(not(unix))]
pub(super) fn head(_: &File, _: u64) -> Option<Head> {
    None
}

#[cfg(unix)]
#[allow(clippy::unnecessary_wraps)] // Elsewhere there is no identity to give.
fn file_id(metadata: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<FileId> {
    None
}
