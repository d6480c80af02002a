//! `replicate` and `follow`: a state's commits through NATS `JetStream` to
//! copies on other machines (`mapstate_replicate`).

use std::path::Path;
use std::time::{Duration, Instant};

use mapstate::Writer;
use mapstate_replicate::{Follower, Publisher, Target};
use serde_json::json;

use crate::util::{CmdResult, EXIT_FAILURE, EXIT_OK, Failure};

/// Where to connect: `--nats`, else `MAPSTATE_NATS_URL`.
fn url(nats: Option<&str>) -> Result<String, Failure> {
    nats.map(str::to_owned)
        .or_else(|| std::env::var(mapstate_replicate::URL_ENV).ok())
        .ok_or_else(|| {
            Failure::new(
                EXIT_FAILURE,
                format!(
                    "no NATS server given: pass --nats URL[,URL...] or set {}",
                    mapstate_replicate::URL_ENV
                ),
            )
        })
}

/// The stream a state replicates to: `--stream`, else one named after the
/// state's file.
fn stream_name(path: &Path, stream: Option<&str>) -> String {
    stream.map_or_else(
        || {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            format!("mapstate-{}", name_safe(&name))
        },
        str::to_owned,
    )
}

/// `s` with every character but letters, digits, `-` and `_` made `_`: a
/// stream's or a consumer's name.
fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(EXIT_FAILURE, e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(failure)
}

/// The options of both subcommands.
pub(crate) struct Args<'a> {
    pub(crate) path: &'a Path,
    pub(crate) nats: Option<&'a str>,
    pub(crate) stream: Option<&'a str>,
    pub(crate) replicas: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) json: bool,
}

/// `replicate`: publishes every commit of the state, beside its writer.
pub(crate) fn replicate(a: &Args<'_>) -> CmdResult {
    let url = url(a.nats)?;
    let target = Target::new(stream_name(a.path, a.stream), a.replicas);
    let deadline = a.timeout.map(|t| Instant::now() + t);
    runtime()?.block_on(async {
        let client = mapstate_replicate::connect_to(&url).await.map_err(failure)?;
        let mut p = Publisher::start(&client, a.path, &target)
            .await
            .map_err(failure)?;
        status(a.json, &json!({"replicating": a.path, "stream": target.name, "last": p.last()}), || {
            format!("replicating {} to stream {} from commit {}", a.path.display(), target.name, p.last())
        });
        while deadline.is_none_or(|d| Instant::now() < d) {
            let done = p.step(Duration::from_millis(200)).await.map_err(failure)?;
            if done.commits + done.snapshots > 0 {
                status(a.json, &json!({"published": done.commits, "snapshots": done.snapshots, "last": done.last}), || {
                    format!("published {} commit(s), {} snapshot(s): the stream holds commit {}", done.commits, done.snapshots, done.last)
                });
            }
        }
        Ok(EXIT_OK)
    })
}

/// `follow`: keeps a local copy of a replicated state.
pub(crate) fn follow(a: &Args<'_>, name: Option<&str>) -> CmdResult {
    let url = url(a.nats)?;
    let target = Target::new(stream_name(a.path, a.stream), a.replicas);
    let name = name.map_or_else(|| format!("follow-{}", host()), str::to_owned);
    let deadline = a.timeout.map(|t| Instant::now() + t);
    runtime()?.block_on(async {
        let client = mapstate_replicate::connect_to(&url)
            .await
            .map_err(failure)?;
        let mut f = Follower::start(&client, a.path, &target, &name, Writer::options())
            .await
            .map_err(failure)?;
        status(
            a.json,
            &json!({"following": target.name, "state": a.path, "reader": name, "seq": f.seq()}),
            || {
                format!(
                    "following stream {} into {} (durable reader {name}) from commit {}",
                    target.name,
                    a.path.display(),
                    f.seq()
                )
            },
        );
        while deadline.is_none_or(|d| Instant::now() < d) {
            let done = f.step(Duration::from_millis(200)).await.map_err(failure)?;
            if done.applied + done.restored > 0 {
                let behind = f.behind().await.map_err(failure)?;
                status(
                    a.json,
                    &json!({"applied": done.applied, "restored": done.restored,
                            "seq": done.seq, "behind": behind}),
                    || {
                        format!(
                            "applied {} commit(s), restored {} snapshot(s): at commit {}, \
                             {behind} entries behind",
                            done.applied, done.restored, done.seq
                        )
                    },
                );
            }
        }
        f.close().map_err(failure)?;
        Ok(EXIT_OK)
    })
}

/// One status line, as JSON or text, on stdout.
fn status(json: bool, v: &serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{v}");
    } else {
        println!("{}", text());
    }
}

/// This machine's name, for the default durable reader.
fn host() -> String {
    name_safe(&rustix::system::uname().nodename().to_string_lossy())
}
