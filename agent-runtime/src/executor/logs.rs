//! Reading a container's log files (written by its shim: `<RFC 3339 time> <stream>
//! <text>` per line, rotated to `container.log.1`, `.2`...) as a task's log lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::container::log::LOG_FILE;
use crate::exec::{LogLine, LogLines, LogOptions};

/// How often a followed log is checked for new lines.
const POLL: Duration = Duration::from_millis(100);
/// Lines buffered between the reading thread and the stream.
const BUFFER: usize = 256;

/// Parses one stored line; lines that do not parse are returned whole on stdout.
pub fn parse_line(line: &[u8]) -> LogLine {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (stamp, stream, text) = (parts.next(), parts.next(), parts.next());
    let parsed = stamp
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(parse_rfc3339_ns);
    match (parsed, stream, text) {
        (Some(timestamp_ns), Some(b"stdout" | b"stderr"), Some(text)) => LogLine {
            timestamp_ns,
            stderr: stream == Some(b"stderr"),
            data: text.to_vec(),
        },
        _ => LogLine {
            timestamp_ns: 0,
            stderr: false,
            data: line.to_vec(),
        },
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as nanoseconds since the Unix epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || frac.len() > 9 {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
    };
    // Days from civil, Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1_000_000_000 + nanos).ok()
}

/// The log files of a container, oldest first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix(LOG_FILE)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut all: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    all.push(dir.join(LOG_FILE));
    all
}

/// Every complete line stored now, oldest first, and where the current file ends.
fn read_all(dir: &Path) -> (Vec<LogLine>, Option<(File, u64)>) {
    let mut lines = Vec::new();
    let mut current = None;
    for path in files(dir) {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut reader = BufReader::new(file);
        let mut offset = 0u64;
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 || buf.last() != Some(&b'\n') {
                break; // a partial last line is read when complete
            }
            offset += n as u64;
            buf.pop();
            lines.push(parse_line(&buf));
            buf.clear();
        }
        if path.file_name().and_then(|n| n.to_str()) == Some(LOG_FILE) {
            current = Some((reader.into_inner(), offset));
        }
    }
    (lines, current)
}

/// A task's log lines per `options`: the stored ones (or their tail), then with
/// `follow` new ones until `finished` says the container is gone and every line has
/// been read, or the stream is dropped.
pub fn read(
    dir: PathBuf,
    options: LogOptions,
    finished: impl Fn() -> bool + Send + 'static,
) -> LogLines {
    let (tx, rx) = mpsc::channel(BUFFER);
    std::thread::spawn(move || {
        let (mut lines, current) = read_all(&dir);
        if let Some(tail) = options.tail {
            let skip = lines
                .len()
                .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
            lines.drain(..skip);
        }
        for line in lines {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
        if options.follow {
            follow(&dir, current, &tx, &finished);
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends new lines of the current file as they are written, switching to the new
/// file when the shim rotates (the old one is read to its end first).
fn follow(
    dir: &Path,
    mut current: Option<(File, u64)>,
    tx: &mpsc::Sender<LogLine>,
    finished: &dyn Fn() -> bool,
) {
    let path = dir.join(LOG_FILE);
    let mut partial = Vec::new();
    loop {
        if tx.is_closed() {
            return;
        }
        let done = finished();
        if current.is_none() {
            current = File::open(&path).ok().map(|f| (f, 0));
        }
        if let Some((file, offset)) = current.as_mut() {
            let mut chunk = Vec::new();
            if file.seek(SeekFrom::Start(*offset)).is_ok() && file.read_to_end(&mut chunk).is_ok() {
                *offset += chunk.len() as u64;
                partial.extend_from_slice(&chunk);
                while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=end).collect();
                    if tx
                        .blocking_send(parse_line(&line[..line.len() - 1]))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let rotated = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(open), Ok(named)) => open.ino() != named.ino(),
                (Ok(_), Err(_)) => true,
                _ => false,
            };
            if rotated {
                current = None;
                partial.clear();
                continue;
            }
        }
        if done {
            return;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::Write;

    #[test]
    fn timestamps_round_trip_with_the_writer() {
        let now = std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let stamp = crate::container::log::rfc3339(now);
        assert_eq!(parse_rfc3339_ns(&stamp), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T12:00:00.5Z"),
            Some(1_709_208_000_500_000_000)
        );
        assert_eq!(parse_rfc3339_ns("not a time"), None);
    }

    #[test]
    fn lines_keep_their_stream_and_odd_lines_survive() {
        let line = parse_line(b"2023-11-14T22:13:20.000000000Z stderr oh no: it broke");
        assert!(line.stderr);
        assert_eq!(line.data, b"oh no: it broke");
        let odd = parse_line(b"garbage");
        assert_eq!(
            (odd.timestamp_ns, odd.data.as_slice()),
            (0, &b"garbage"[..])
        );
    }

    fn write(dir: &Path, name: &str, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap();
        for l in lines {
            writeln!(f, "2023-11-14T22:13:20.000000000Z stdout {l}").unwrap();
        }
    }

    #[tokio::test]
    async fn rotated_files_come_first_and_tail_counts_across_them() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "container.log.2", &["a"]);
        write(dir.path(), "container.log.1", &["b", "c"]);
        write(dir.path(), "container.log", &["d"]);
        let all: Vec<_> = read(dir.path().into(), LogOptions::default(), || true)
            .map(|l| String::from_utf8(l.data).unwrap())
            .collect()
            .await;
        assert_eq!(all, ["a", "b", "c", "d"]);
        let options = LogOptions {
            tail: Some(2),
            follow: false,
        };
        let tail: Vec<_> = read(dir.path().into(), options, || true)
            .map(|l| String::from_utf8(l.data).unwrap())
            .collect()
            .await;
        assert_eq!(tail, ["c", "d"]);
    }

    #[tokio::test]
    async fn following_sees_new_lines_and_rotation_then_ends_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "container.log", &["one"]);
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        let options = LogOptions {
            tail: None,
            follow: true,
        };
        let mut lines = read(dir.path().into(), options, move || {
            flag.load(std::sync::atomic::Ordering::SeqCst)
        });
        assert_eq!(lines.next().await.unwrap().data, b"one");
        write(dir.path(), "container.log", &["two"]);
        assert_eq!(lines.next().await.unwrap().data, b"two");
        std::fs::rename(
            dir.path().join("container.log"),
            dir.path().join("container.log.1"),
        )
        .unwrap();
        write(dir.path(), "container.log", &["three"]);
        assert_eq!(lines.next().await.unwrap().data, b"three");
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(lines.next().await.is_none());
    }
}
