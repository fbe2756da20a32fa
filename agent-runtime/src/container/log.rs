//! The container's log: one line per output line, `<RFC 3339 time> <stream> <text>`,
//! in `logs/container.log`, rotated to `container.log.1`, `.2`... at a size cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current log file's name; rotated files get `.1`, `.2`... appended.
pub const LOG_FILE: &str = "container.log";

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// The process's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes log lines with a size cap and rotation.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    /// Opens (appending to) `dir/container.log`.
    pub fn open(dir: &Path, max_bytes: u64, max_files: u32) -> io::Result<LogWriter> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
        })
    }

    /// Appends one line (without its newline) from `stream`, rotating first when
    /// it would push the current file over the cap.
    pub fn line(&mut self, stream: Stream, text: &[u8], now: SystemTime) -> io::Result<()> {
        let stamp = rfc3339(now);
        let len = (stamp.len() + stream.name().len() + text.len() + 3) as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        // One write per line, so a reader never sees half a line's prefix.
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(stamp.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(stream.name().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(text);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = |n: u32| {
            if n == 0 {
                self.dir.join(LOG_FILE)
            } else {
                self.dir.join(format!("{LOG_FILE}.{n}"))
            }
        };
        if self.max_files > 1 {
            for n in (0..self.max_files - 1).rev() {
                match std::fs::rename(path(n), path(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path(0))?;
        self.size = 0;
        Ok(())
    }
}

/// `time` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC).
pub fn rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_463_378, 123_456_789);
        assert_eq!(rfc3339(t), "2026-11-23T19:49:38.123456789Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_rotate_at_the_cap_and_old_files_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(tmp.path(), 200, 3).unwrap();
        for i in 0..20 {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            log.line(stream, format!("message {i:02}").as_bytes(), UNIX_EPOCH)
                .unwrap();
        }
        let current = std::fs::read_to_string(tmp.path().join(LOG_FILE)).unwrap();
        assert!(current.len() <= 200, "{}", current.len());
        assert!(current.ends_with("stderr message 19\n"), "{current}");
        assert!(current.starts_with("1970-01-01T00:00:00.000000000Z "));
        let one = std::fs::read_to_string(tmp.path().join("container.log.1")).unwrap();
        assert!(one.len() <= 200 && !one.is_empty());
        assert!(tmp.path().join("container.log.2").exists());
        assert!(!tmp.path().join("container.log.3").exists());
        // The newest lines survive; the oldest were rotated away.
        let all = format!(
            "{}{one}{current}",
            std::fs::read_to_string(tmp.path().join("container.log.2")).unwrap()
        );
        assert!(!all.contains("message 00"));
        let first_kept: usize = all
            .lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let count = all.lines().count();
        assert_eq!(first_kept + count, 20);
    }
}
