//! The protocol between the runtime (parent) and the processes it forks to build a container:
//! the intermediate process (joins and creates namespaces) and the container process (init,
//! or a process `exec` starts). Each side expects the next message in a fixed order and
//! rejects anything else.
//!
//! ```text
//! intermediate -> parent   UserNamespaceCreated          (only with a new user namespace)
//! parent -> intermediate   IdMapsWritten
//! intermediate -> parent   TimeNamespaceCreated          (only an init with time offsets)
//! parent -> intermediate   TimeOffsetsWritten
//! intermediate -> parent   ProcessForked { pid }         then the intermediate exits
//! parent -> process        Proceed { state }             (it is now in its cgroup)
//! init -> parent           RunCreateRuntimeHooks         (mounts done, before pivot_root)
//! parent -> init           HooksDone
//! init -> parent           Ready                         (init now waits for `start`)
//! exec'd process           closes the channel on execve  (or sends Error)
//! ```

use serde::{Deserialize, Serialize};

/// From the intermediate or container process to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromChild {
    UserNamespaceCreated,
    /// The intermediate unshared a time namespace for its child; the runtime writes the
    /// offsets (from outside: in a user namespace the intermediate may not).
    TimeNamespaceCreated,
    ProcessForked { pid: i32 },
    RunCreateRuntimeHooks,
    Ready,
    Error { message: String },
}

/// From the runtime to the intermediate or container process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromParent {
    IdMapsWritten,
    TimeOffsetsWritten,
    /// Go on: the process is in its cgroup. `state` is the runtime-spec state JSON that
    /// createContainer and startContainer hooks receive on stdin.
    Proceed { state: String },
    HooksDone,
}
