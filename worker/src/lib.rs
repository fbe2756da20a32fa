//! rswarm worker agent (the dispatcher session and task runners arrive with orchestration).
#![forbid(unsafe_code)]
