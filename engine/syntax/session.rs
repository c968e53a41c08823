//! The decode session of one load. Serde's `Deserialize` has no context parameter, so a value
//! that needs its surroundings while it is read (a template checking which variables exist here,
//! a path reporting a problem and reading on) finds them in this per-thread session. The loader
//! opens it, sets the scope as it walks the file, and collects the reported problems at the end;
//! outside a load there is no session, problems are dropped and templates see the default scope.
//!
//! It lives on the bottom floor so that the floors above it (expressions, table operations) read
//! their context without calling up into the loader.

use std::cell::RefCell;

use super::diag::Diagnostic;

/// The names a template may use at the current place of the file.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Top-level variables (`source`, `record`, `settings`...).
    pub roots: Vec<String>,
    /// Ids of the steps that come before this place (`steps.<id>`).
    pub steps: Vec<String>,
}

#[derive(Default)]
struct State {
    diagnostics: Vec<Diagnostic>,
    scope: Scope,
    /// The settings templates may use; `None` until the loader knows them.
    declared_settings: Option<Vec<String>>,
}

thread_local! {
    static SESSION: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// An open session; closing it (or dropping it) ends the session on this thread.
pub struct Session(());

impl Session {
    /// Open a session on this thread (a session already open is replaced).
    pub fn open() -> Session {
        SESSION.with(|s| *s.borrow_mut() = Some(State::default()));
        Session(())
    }

    /// Set the names templates may use from here on.
    pub fn set_scope(&self, roots: &[&str], steps: &[String]) {
        SESSION.with(|s| {
            if let Some(state) = s.borrow_mut().as_mut() {
                state.scope = Scope {
                    roots: roots.iter().map(|r| r.to_string()).collect(),
                    steps: steps.to_vec(),
                };
            }
        });
    }

    /// The settings templates may use (others only where they test for them).
    pub fn declare_settings(&self, names: Vec<String>) {
        with_state(|state| state.declared_settings = Some(names));
    }

    /// End the session and return the problems reported during it.
    pub fn close(self) -> Vec<Diagnostic> {
        SESSION
            .with(|s| s.borrow_mut().take())
            .map(|s| s.diagnostics)
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        SESSION.with(|s| s.borrow_mut().take());
    }
}

/// Record a problem found while reading; the load fails with it (outside a load it is dropped).
pub fn report(d: Diagnostic) {
    SESSION.with(|s| {
        if let Some(state) = s.borrow_mut().as_mut() {
            state.diagnostics.push(d);
        }
    });
}

/// The scope at the current place, or `None` outside a load.
pub fn scope() -> Option<Scope> {
    SESSION.with(|s| s.borrow().as_ref().map(|state| state.scope.clone()))
}

fn with_state(f: impl FnOnce(&mut State)) {
    SESSION.with(|s| {
        if let Some(state) = s.borrow_mut().as_mut() {
            f(state);
        }
    });
}

/// The settings templates may use, or `None` outside a load (nothing to check against).
pub fn declared_settings() -> Option<Vec<String>> {
    SESSION.with(|s| s.borrow().as_ref()?.declared_settings.clone())
}
