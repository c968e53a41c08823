//! E-mail over SMTP (lettre): the files written during the run, sent to each recipient.

mod sink;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.sink::<sink::EmailSinkConfig>("email");
}
