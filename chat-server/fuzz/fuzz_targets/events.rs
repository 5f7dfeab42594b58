//! Feeds arbitrary bytes through what a client controls: an event payload's
//! decoding and validation (`check_event`, the same code the handlers run),
//! a rooms claim, and a handshake token. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chat_server::fuzzing::one_input(data);
});
