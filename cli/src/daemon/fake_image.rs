//! Task behaviours of the fake executor, chosen by image name so that cluster tests
//! can ask for them from outside the node process:
//!
//! - `fake/crash:CODE:AFTER_MS`: runs for `AFTER_MS` milliseconds, then exits with
//!   `CODE`;
//! - `fake/missing` (any tag): the image is not found, the task is rejected;
//! - anything else: runs until stopped.

use std::time::Duration;

/// Images whose behaviour this module decides start with this.
const PREFIX: &str = "fake/";

/// What a fake task does, from its image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeImage {
    /// Runs until stopped.
    Run,
    /// Exits by itself with `code` after `after`.
    Crash {
        /// The exit code.
        code: i32,
        /// How long it runs first.
        after: Duration,
    },
    /// The image does not exist.
    Missing,
    /// A `fake/` image whose name does not parse: refused with this reason (a test
    /// that misspells a behaviour must not get a task that runs forever instead).
    Invalid(String),
}

/// The behaviour of `image`.
pub fn parse(image: &str) -> FakeImage {
    let Some(rest) = image.strip_prefix(PREFIX) else {
        return FakeImage::Run;
    };
    let (name, tag) = rest.split_once(':').unwrap_or((rest, ""));
    match name {
        "missing" => FakeImage::Missing,
        "crash" => parse_crash(tag).unwrap_or_else(|| {
            FakeImage::Invalid(format!(
                "invalid fake image \"{image}\": expected fake/crash:CODE:AFTER_MS"
            ))
        }),
        _ => FakeImage::Run,
    }
}

/// `CODE:AFTER_MS`.
fn parse_crash(tag: &str) -> Option<FakeImage> {
    let (code, after) = tag.split_once(':')?;
    Some(FakeImage::Crash {
        code: code.parse().ok()?,
        after: Duration::from_millis(after.parse().ok()?),
    })
}

#[cfg(feature = "fake-executor")]
pub use executor::ByImage;

#[cfg(feature = "fake-executor")]
mod executor {
    use rswarm_agent_runtime::exec::task_image;
    use rswarm_agent_runtime::fake::{FakeBehavior, FakeExecutor};
    use rswarm_agent_runtime::{Controller, ExecError, Executor, LogLines, LogOptions};
    use rswarm_proto::api::Task;

    use super::{FakeImage, parse};

    /// A [`FakeExecutor`] whose behaviour per image follows [`parse`].
    #[derive(Clone, Default)]
    pub struct ByImage {
        /// Runs the tasks; told each image's behaviour before its first controller.
        fake: FakeExecutor,
    }

    impl ByImage {
        /// A fake with no task yet.
        pub fn new() -> ByImage {
            ByImage::default()
        }
    }

    /// The fake's knobs for `image`.
    fn behavior(image: &FakeImage) -> FakeBehavior {
        match image {
            FakeImage::Run => FakeBehavior::default(),
            FakeImage::Crash { code, after } => FakeBehavior {
                run_for: Some(*after),
                exit_code: *code,
                ..FakeBehavior::default()
            },
            FakeImage::Missing => FakeBehavior {
                image_missing: true,
                ..FakeBehavior::default()
            },
            FakeImage::Invalid(reason) => FakeBehavior {
                prepare_error: Some(reason.clone()),
                ..FakeBehavior::default()
            },
        }
    }

    impl Executor for ByImage {
        fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError> {
            let image = task_image(task)?;
            // Idempotent: the same image always maps to the same behaviour.
            self.fake.set_image(image, behavior(&parse(image)));
            self.fake.controller(task)
        }

        fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogLines, ExecError> {
            self.fake.logs(task_id, options)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_images_run() {
        assert_eq!(parse("nginx"), FakeImage::Run);
        assert_eq!(parse("fake/web:1"), FakeImage::Run);
        assert_eq!(parse("registry/fake/crash:1:2"), FakeImage::Run);
    }

    #[test]
    fn crash_images() {
        assert_eq!(
            parse("fake/crash:1:300"),
            FakeImage::Crash {
                code: 1,
                after: Duration::from_millis(300)
            }
        );
        assert_eq!(
            parse("fake/crash:-9:0"),
            FakeImage::Crash {
                code: -9,
                after: Duration::ZERO
            }
        );
        for bad in [
            "fake/crash",
            "fake/crash:1",
            "fake/crash:x:1",
            "fake/crash:1:-5",
        ] {
            match parse(bad) {
                FakeImage::Invalid(reason) => {
                    assert!(reason.contains(bad), "{reason}");
                    assert!(reason.contains("fake/crash:CODE:AFTER_MS"), "{reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_images() {
        assert_eq!(parse("fake/missing"), FakeImage::Missing);
        assert_eq!(parse("fake/missing:latest"), FakeImage::Missing);
    }
}
