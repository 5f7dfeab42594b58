//! Replays every input of the checked-in fuzz corpus (chat-server/fuzz/corpus,
//! seeds plus whatever `make fuzz` found worth keeping) through the same
//! function the fuzz target runs: a regression test for past findings. Also
//! checks that the corpus has a valid input of every client event, since the
//! fuzzer only reaches an event whose name some input spells out, and goes
//! past its decoding only from a payload that decodes.

use std::path::{Path, PathBuf};

use chat_server::fuzzing::{accepted, event_names, one_input, split_input};

fn corpus() -> (PathBuf, Vec<(PathBuf, Vec<u8>)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/events");
    let inputs = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|entry| {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    (dir, inputs)
}

#[test]
fn every_corpus_input_runs_clean() {
    let (dir, inputs) = corpus();
    for (path, data) in &inputs {
        let outcome = std::panic::catch_unwind(|| one_input(data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
    assert!(
        inputs.len() >= 10,
        "only {} corpus inputs in {}",
        inputs.len(),
        dir.display()
    );
}

#[test]
fn the_corpus_names_every_client_event() {
    let (dir, inputs) = corpus();
    for event in event_names() {
        assert!(
            inputs
                .iter()
                .any(|(_, data)| split_input(data).0 == event && accepted(data)),
            "no input in {} names `{event}`: add one, `{event}` on its first line and a valid payload after it",
            dir.display()
        );
    }
}
