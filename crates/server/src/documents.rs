//! Which documents are being started on or deleted, so that a delete never races an upload,
//! resume or redrive of the same document into an execution whose data is gone. Per document:
//! work on other documents never waits for a delete.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Uploads, resumes or redrives starting work on it.
    Starting(usize),
    Deleting,
}

/// The documents in use now.
#[derive(Debug, Default)]
pub struct DocumentGate(Mutex<HashMap<String, Use>>);

/// Work on a document is starting; until dropped, the document is not deleted.
#[must_use]
pub struct Starting<'a> {
    gate: &'a DocumentGate,
    id: String,
}

/// A document is being deleted; until dropped, nothing starts on it.
#[must_use]
pub struct Deleting<'a> {
    gate: &'a DocumentGate,
    id: String,
}

impl DocumentGate {
    fn uses(&self) -> std::sync::MutexGuard<'_, HashMap<String, Use>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start work on document `id`; 409 while it is being deleted.
    pub fn start(&self, id: &str) -> Result<Starting<'_>, ApiError> {
        let mut uses = self.uses();
        match uses.get_mut(id) {
            Some(Use::Deleting) => {
                return Err(ApiError::conflict(format!("document {id} is being deleted")));
            }
            Some(Use::Starting(n)) => *n += 1,
            None => {
                uses.insert(id.to_string(), Use::Starting(1));
            }
        }
        Ok(Starting { gate: self, id: id.to_string() })
    }

    /// Delete document `id`; 409 while work on it is starting or another delete runs.
    pub fn delete(&self, id: &str) -> Result<Deleting<'_>, ApiError> {
        let mut uses = self.uses();
        match uses.get(id) {
            Some(Use::Deleting) => Err(ApiError::conflict(format!("document {id} is being deleted already"))),
            Some(Use::Starting(_)) => Err(ApiError::conflict(format!(
                "an upload, resume or redrive of document {id} is starting; try the delete again in a moment"
            ))),
            None => {
                uses.insert(id.to_string(), Use::Deleting);
                Ok(Deleting { gate: self, id: id.to_string() })
            }
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        let mut uses = self.gate.uses();
        match uses.get_mut(&self.id) {
            Some(Use::Starting(n)) if *n > 1 => *n -= 1,
            _ => {
                uses.remove(&self.id);
            }
        }
    }
}

impl Drop for Deleting<'_> {
    fn drop(&mut self) {
        self.gate.uses().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_and_a_start_of_one_document_exclude_each_other_and_others_are_free() {
        let gate = DocumentGate::default();
        let first = gate.start("a").unwrap();
        let second = gate.start("a").unwrap();
        assert_eq!(gate.delete("a").err().unwrap().status.as_u16(), 409);
        let other = gate.delete("b").unwrap();
        assert_eq!(gate.start("b").err().unwrap().status.as_u16(), 409);
        assert_eq!(gate.delete("b").err().unwrap().status.as_u16(), 409);
        drop(first);
        assert!(gate.delete("a").is_err(), "one start still holds it");
        drop(second);
        let deleting = gate.delete("a").unwrap();
        drop((deleting, other));
        assert!(gate.uses().is_empty(), "nothing left behind");
        let _again = gate.start("b").unwrap();
    }
}
