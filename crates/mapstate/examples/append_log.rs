//! An append-only log: a commit per record, and a follower that reads each
//! new record as it is committed (in another thread here; another process
//! works the same).
//!
//! `cargo run -p mapstate --example append_log`

use mapstate::{Reader, Writer};

fn main() -> mapstate::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("log.state");
    let mut w = Writer::options()
        .create(true)
        .len(0)
        .max_size(1 << 30) // room to grow; the file grows as records come
        .open(&path)?;

    let r = Reader::open(&path)?;
    let follower = std::thread::spawn(move || -> mapstate::Result<String> {
        let (mut seen, mut read_to, mut text) = (0, 0, String::new());
        while !text.ends_with("done\n") {
            // Sleeps on a futex until the next commit (no polling).
            seen = r.wait_for_change(seen, None)?.expect("no timeout");
            // Records never change once written: read whatever is new.
            let len = r.len();
            let mut buf = vec![0; (len - read_to) as usize];
            r.read_at(read_to, &mut buf)?;
            read_to = len;
            text.push_str(&String::from_utf8_lossy(&buf));
        }
        Ok(text)
    });

    for record in ["first\n", "second\n", "third\n", "done\n"] {
        let mut t = w.begin();
        let end = t.len();
        t.set_len(end + record.len() as u64)?;
        t.write_at(end, record.as_bytes())?;
        t.commit()?; // this record survives a SIGKILL of the writer from here on
    }

    let text = follower.join().expect("the follower")?;
    assert_eq!(text, "first\nsecond\nthird\ndone\n");
    print!("the follower read:\n{text}");
    w.remove()
}
