//! E-mail over SMTP (lettre): the files written during the run, sent to each recipient (`email`
//! sink); one message per record through a server the record names (`smtp.send` step).

mod send;
mod sink;
mod tls;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.sink::<sink::EmailSinkConfig>("email");
    r.step::<send::SendConfig>("smtp.send");
}
