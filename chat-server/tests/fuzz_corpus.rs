//! Replays every input of the checked-in fuzz corpus (chat-server/fuzz/corpus,
//! seeds plus whatever `make fuzz` found worth keeping) through the same
//! function the fuzz target runs: a regression test for past findings.

use std::path::Path;

#[test]
fn every_corpus_input_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/events");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| chat_server::fuzzing::one_input(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(
        count >= 10,
        "only {count} corpus inputs in {}",
        dir.display()
    );
}
