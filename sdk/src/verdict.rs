//! Constructors for verdicts, violations and patches.

use crate::{Hook, Patch, Verdict, Violation};

impl Violation {
    /// A violation of `field` with a message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Verdict {
    /// Deny with a single violation.
    pub fn deny(field: impl Into<String>, message: impl Into<String>) -> Self {
        Verdict::Deny(vec![Violation::new(field, message)])
    }

    /// Allow when `violations` is empty, deny otherwise.
    pub fn from_violations(violations: Vec<Violation>) -> Self {
        if violations.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Deny(violations)
        }
    }
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Patch {
            set: Vec::new(),
            unset: Vec::new(),
        }
    }

    /// Set `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((key.into(), value.into()));
        self
    }

    /// Remove `key`.
    pub fn unset(mut self, key: impl Into<String>) -> Self {
        self.unset.push(key.into());
        self
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    /// `Allow` for an empty patch, `Mutate` otherwise.
    pub fn into_verdict(self) -> Verdict {
        if self.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Mutate(self)
        }
    }
}

impl Default for Patch {
    fn default() -> Self {
        Self::new()
    }
}

impl Hook {
    /// The WIT name ("pre-start", "onstopns", ...), for logs.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreCreate => "pre-create",
            Hook::PreStart => "pre-start",
            Hook::Onstart => "onstart",
            Hook::PreStop => "pre-stop",
            Hook::Onstopns => "onstopns",
            Hook::Onstop => "onstop",
            Hook::PreDelete => "pre-delete",
            Hook::OnSnapshot => "on-snapshot",
            Hook::OnRestore => "on-restore",
            Hook::OnRename => "on-rename",
            Hook::OnUpdate => "on-update",
        }
    }
}
