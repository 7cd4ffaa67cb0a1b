//! The local AWS stack of mailgate: resources provisioned from `infra/template.yaml` into the
//! emulator, and a trigger runner that plays the part of SQS event source mappings and
//! EventBridge schedules for functions served by `cargo lambda watch`.

pub mod provision;
pub mod template;
pub mod triggers;

pub use provision::{LocalStack, StackSpec, destroy, provision};
pub use template::Template;
pub use triggers::{Invoker, TriggerRunner};
