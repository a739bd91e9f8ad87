//! Checkpoints on disk: one file each, written whole or not at all.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::encoding::crc32;
use super::{Checkpoint, VERSION};

/// The first bytes of every checkpoint file.
const MAGIC: &[u8; 8] = b"RUNNERCK";

/// Bytes before the body: magic, version, body length, CRC-32.
const HEADER: usize = 8 + 4 + 8 + 4;

/// The checkpoints of one pipeline, in a directory of their own.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// Why checkpoints could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or the directory could not be read or written.
    #[error("cannot {doing} `{path}`: {source}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Another run holds the state directory.
    #[error(
        "another run is using the checkpoints in `{dir}`: one run at a time may use a state \
         directory (give this one its own with --state-dir)"
    )]
    Busy {
        /// The state directory.
        dir: String,
    },
    /// There are checkpoints, but none can be read.
    #[error("no checkpoint in `{dir}` can be read: {reasons}")]
    Unusable {
        /// The state directory.
        dir: String,
        /// What is wrong with each.
        reasons: String,
    },
}

/// A run's hold on its state directory: while it lives, no other run can
/// take it. The system lets go when the process ends, however it ends.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The file a run locks in its state directory.
const LOCK: &str = "lock";

impl Store {
    /// The checkpoints under `dir`; nothing is created until the first is
    /// saved.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.display().to_string();
        move |source| StoreError::Io {
            doing,
            path,
            source,
        }
    }

    /// Whether the directory holds a checkpoint.
    pub fn has_checkpoint(&self) -> bool {
        self.newest().is_some()
    }

    /// The sequence number of the newest checkpoint in the directory, if
    /// it holds one (not read: [`load`](Self::load) checks it).
    pub fn newest(&self) -> Option<u64> {
        self.files().ok()?.first().map(|(sequence, _)| *sequence)
    }

    /// The sequence numbers of the checkpoints in the directory, newest
    /// first (not read).
    ///
    /// # Errors
    ///
    /// The directory cannot be read.
    pub fn sequences(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .files()?
            .into_iter()
            .map(|(sequence, _)| sequence)
            .collect())
    }

    /// The checkpoint files, newest first, with their sequence numbers.
    fn files(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        self.named(|name| name.strip_prefix("checkpoint-"))
    }

    /// The temporary files of checkpoints being written, or left behind by
    /// a run killed while it wrote one (the run that resumes writes that
    /// checkpoint again, over it).
    fn temporaries(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        self.named(|name| {
            name.strip_prefix(".checkpoint-")
                .and_then(|name| name.strip_suffix(".tmp"))
        })
    }

    /// The files whose names `number` takes a sequence number from, newest
    /// first.
    fn named(
        &self,
        number: impl Fn(&str) -> Option<&str>,
    ) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Self::io("read", &self.dir)(error)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io("read", &self.dir))?;
            let name = entry.file_name();
            let Some(sequence) = name
                .to_str()
                .and_then(&number)
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            files.push((sequence, entry.path()));
        }
        files.sort_by_key(|(sequence, _)| std::cmp::Reverse(*sequence));
        Ok(files)
    }

    /// The newest checkpoint that reads back whole, and a warning for each
    /// newer one that does not; `None` when there is none at all.
    ///
    /// # Errors
    ///
    /// The directory cannot be read, or there are checkpoints and none
    /// reads back.
    pub fn load(&self) -> Result<(Option<Checkpoint>, Vec<String>), StoreError> {
        let mut warnings = Vec::new();
        let files = self.files()?;
        for (_, path) in &files {
            match read(path) {
                Ok(checkpoint) => return Ok((Some(checkpoint), warnings)),
                Err(problem) => warnings.push(format!(
                    "the checkpoint `{}` cannot be read ({problem}); using the one before it",
                    path.display()
                )),
            }
        }
        if files.is_empty() {
            return Ok((None, warnings));
        }
        Err(StoreError::Unusable {
            dir: self.dir.display().to_string(),
            reasons: warnings.join("; "),
        })
    }

    /// The checkpoint numbered `sequence`, if the directory holds it.
    ///
    /// # Errors
    ///
    /// The directory cannot be read, or the checkpoint does not read back.
    pub fn load_at(&self, sequence: u64) -> Result<Option<Checkpoint>, StoreError> {
        let files = self.files()?;
        let Some((_, path)) = files.iter().find(|(number, _)| *number == sequence) else {
            return Ok(None);
        };
        read(path)
            .map(Some)
            .map_err(|problem| StoreError::Unusable {
                dir: self.dir.display().to_string(),
                reasons: format!("`{}`: {problem}", path.display()),
            })
    }

    /// Writes `checkpoint` durably, then removes all but it and the one
    /// before it; returns the bytes written.
    ///
    /// # Errors
    ///
    /// The file cannot be written, synced or renamed.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<u64, StoreError> {
        fs::create_dir_all(&self.dir).map_err(Self::io("create", &self.dir))?;
        let (head, matcher) = checkpoint.encode();
        let header = header(&head, matcher);
        let name = format!("checkpoint-{:020}", checkpoint.sequence);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        let written = File::create(&temporary)
            .map_err(Self::io("create", &temporary))
            .and_then(|mut file| {
                file.write_all(&header)
                    .and_then(|()| file.write_all(&head))
                    .and_then(|()| file.write_all(matcher))
                    .and_then(|()| file.sync_all())
                    .map_err(Self::io("write", &temporary))
            })
            .and_then(|()| fs::rename(&temporary, &path).map_err(Self::io("rename", &temporary)));
        if let Err(error) = written {
            // A full disk leaves no half checkpoint behind to fill it more.
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        sync_dir(&self.dir).map_err(Self::io("sync", &self.dir))?;
        for (sequence, old) in self.files()?.into_iter().skip(2) {
            if sequence < checkpoint.sequence {
                fs::remove_file(&old).map_err(Self::io("remove", &old))?;
            }
        }
        Ok((header.len() + head.len() + matcher.len()) as u64)
    }

    /// Removes the checkpoints numbered after `sequence` (every one, for
    /// `None`): those whose Kafka transactions did not commit. Gives their
    /// numbers.
    ///
    /// # Errors
    ///
    /// A checkpoint cannot be removed, or the directory read or synced.
    pub fn discard_after(&self, sequence: Option<u64>) -> Result<Vec<u64>, StoreError> {
        let mut discarded = Vec::new();
        for (number, path) in self.files()? {
            if sequence.is_none_or(|kept| number > kept) {
                fs::remove_file(&path).map_err(Self::io("remove", &path))?;
                discarded.push(number);
            }
        }
        if !discarded.is_empty() {
            sync_dir(&self.dir).map_err(Self::io("sync", &self.dir))?;
        }
        Ok(discarded)
    }

    /// Takes the state directory for this run, creating it.
    ///
    /// # Errors
    ///
    /// Another run holds it, or it cannot be created or locked.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        fs::create_dir_all(&self.dir).map_err(Self::io("create", &self.dir))?;
        let path = self.dir.join(LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io("create", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Busy {
                dir: self.dir.display().to_string(),
            }),
            Err(fs::TryLockError::Error(error)) => Err(Self::io("lock", &path)(error)),
        }
    }

    /// Lets go of the state directory after [`clear`](Self::clear): its
    /// lock file goes, and the directory if that leaves it empty.
    pub fn release(&self, lock: Lock) {
        let _ = fs::remove_file(self.dir.join(LOCK));
        drop(lock);
        let _ = fs::remove_dir(&self.dir);
    }

    /// Removes every checkpoint, and the directory if that leaves it empty
    /// (a run's lock keeps it).
    ///
    /// # Errors
    ///
    /// A checkpoint cannot be removed.
    pub fn clear(&self) -> Result<(), StoreError> {
        for (_, path) in self.files()?.into_iter().chain(self.temporaries()?) {
            fs::remove_file(&path).map_err(Self::io("remove", &path))?;
        }
        // Only if empty: the directory may hold what is not ours.
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}

/// Reads and checks one checkpoint file.
/// The header of a checkpoint whose body is `head` then `matcher`: magic,
/// format version, the body's length and its CRC-32.
fn header(head: &[u8], matcher: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&((head.len() + matcher.len()) as u64).to_le_bytes());
    header.extend_from_slice(&crc32(&[head, matcher]).to_le_bytes());
    header
}

/// `checkpoint` as its file holds it, header and all.
pub(crate) fn to_bytes(checkpoint: &Checkpoint) -> Vec<u8> {
    let (head, matcher) = checkpoint.encode();
    let mut bytes = header(&head, matcher);
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(matcher);
    bytes
}

fn read(path: &Path) -> Result<Checkpoint, String> {
    let bytes = fs::read(path).map_err(|error| error.to_string())?;
    from_bytes(&bytes)
}

/// The checkpoint a file's `bytes` hold, checked whole.
///
/// # Errors
///
/// They are not a checkpoint, of a version this runner reads, whole.
pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("it is not a checkpoint".to_string());
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if !(2..=VERSION).contains(&version) {
        return Err(format!(
            "it has format version {version}; this runner reads versions 2 to {VERSION}"
        ));
    }
    let mut length = [0; 8];
    length.copy_from_slice(&bytes[12..20]);
    let length = usize::try_from(u64::from_le_bytes(length)).unwrap_or(usize::MAX);
    let body = &bytes[HEADER..];
    if body.len() != length {
        return Err(format!("it is cut short: {} bytes of {length}", body.len()));
    }
    if crc32(&[body]) != word(20) {
        return Err("its checksum does not match: it is damaged".to_string());
    }
    Checkpoint::decode(body, version).map_err(|error| error.to_string())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::sample;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runner-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_newest_two_are_kept_and_the_newest_read() {
        let store = Store::new(scratch("keep"));
        assert_eq!(store.load().unwrap().0, None);
        let mut checkpoint = sample();
        for sequence in 1..=4 {
            checkpoint.sequence = sequence;
            store.save(&checkpoint).unwrap();
        }
        assert_eq!(store.files().unwrap().len(), 2);
        assert_eq!(store.load().unwrap().0.map(|c| c.sequence), Some(4));
        store.clear().unwrap();
        assert!(!store.dir().exists());
    }

    #[test]
    fn checkpoints_after_the_one_committed_are_discarded() {
        let store = Store::new(scratch("discard"));
        let mut checkpoint = sample();
        for sequence in [7, 8] {
            checkpoint.sequence = sequence;
            store.save(&checkpoint).unwrap();
        }
        assert_eq!(store.discard_after(Some(8)).unwrap(), Vec::<u64>::new());
        assert_eq!(store.discard_after(Some(7)).unwrap(), vec![8]);
        assert_eq!(store.load().unwrap().0.map(|c| c.sequence), Some(7));
        assert_eq!(store.discard_after(None).unwrap(), vec![7]);
        assert_eq!(store.newest(), None);
    }

    #[test]
    fn one_run_at_a_time_holds_a_state_directory() {
        let store = Store::new(scratch("lock"));
        let first = store.lock().unwrap();
        let error = store.lock().unwrap_err().to_string();
        assert!(
            error.starts_with("another run is using the checkpoints in"),
            "{error}"
        );
        // Cleared, the directory stays while it is held.
        store.clear().unwrap();
        assert!(store.dir().exists());
        drop(first);
        let again = store.lock().unwrap();
        store.release(again);
        assert!(!store.dir().exists());
    }

    #[test]
    fn what_a_killed_save_left_behind_goes() {
        let store = Store::new(scratch("left"));
        let mut checkpoint = sample();
        checkpoint.sequence = 1;
        store.save(&checkpoint).unwrap();
        // A run killed while it wrote checkpoint 2.
        let left = store.dir().join(".checkpoint-00000000000000000002.tmp");
        fs::write(&left, b"RUNNERCK half").unwrap();
        assert_eq!(store.load().unwrap().0.map(|c| c.sequence), Some(1));
        // A run that read to the end clears it with the checkpoints.
        store.clear().unwrap();
        assert!(!store.dir().exists(), "cleared, with what was left behind");
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_one_before() {
        let store = Store::new(scratch("damaged"));
        let mut checkpoint = sample();
        for sequence in [1, 2] {
            checkpoint.sequence = sequence;
            store.save(&checkpoint).unwrap();
        }
        let newest = store.files().unwrap()[0].1.clone();
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&newest, &bytes).unwrap();
        let (loaded, warnings) = store.load().unwrap();
        assert_eq!(loaded.map(|c| c.sequence), Some(1));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("its checksum does not match"),
            "{warnings:?}"
        );
        // Cut short, the only one left is unusable: an error, not a fresh start.
        fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        fs::remove_file(&store.files().unwrap()[1].1).unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("it is cut short"), "{error}");
        store.clear().unwrap();
    }
}
