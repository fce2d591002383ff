//! The container image: `Dockerfile`, `.dockerignore` and `scripts/build-static` agree
//! with each other and with the manifests that run the image (no container engine is
//! needed; these are static checks). When `make image-binary` has built the image's
//! binary, it is also run: it must be static, report the crate's version, and resolve
//! `localhost` (glibc's getaddrinfo in a static binary) to read a stream and deliver.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::receiver::Receiver;
use crate::support::{eventually, free_port, repo_path};

/// Where the image puts the binary, and the user it runs as.
const IMAGE_BINARY: &str = "/dynamodb-source";
const IMAGE_UID: u32 = 65532;

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation
/// lines joined, comments dropped.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(dockerfile: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation line"
    );
    out
}

/// The stages of a Dockerfile: (FROM arguments, instructions of the stage).
fn stages(instructions: &[Instruction]) -> Vec<(String, Vec<Instruction>)> {
    let mut stages: Vec<(String, Vec<Instruction>)> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            stages.push((i.args.clone(), Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(i.clone());
        }
    }
    stages
}

/// The default of `ARG NAME=default` (global args, before the first FROM).
fn arg_default(instructions: &[Instruction], name: &str) -> Option<String> {
    instructions
        .iter()
        .take_while(|i| i.keyword != "FROM")
        .filter(|i| i.keyword == "ARG")
        .find_map(|i| {
            i.args
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// The output path `scripts/build-static OUT` is given in the build stage.
fn build_output(stage: &[Instruction]) -> String {
    let run = stage
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("scripts/build-static"))
        .expect("the build stage runs scripts/build-static");
    let words: Vec<&str> = run.args.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "scripts/build-static")
        .expect("scripts/build-static as a word");
    words
        .get(at + 1)
        .expect("scripts/build-static is given the output path")
        .to_string()
}

/// The stage a stage name or `FROM` argument names: `(FROM args, body)`.
fn stage_named<'a>(
    stages: &'a [(String, Vec<Instruction>)],
    name: &str,
) -> &'a (String, Vec<Instruction>) {
    stages
        .iter()
        .find(|(from, _)| stage_name(from).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("a stage named {name}: {stages:?}"))
}

/// The `AS name` of a `FROM` line.
fn stage_name(from: &str) -> Option<String> {
    from.split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("AS"))
        .nth(1)
        .map(str::to_owned)
}

/// The words of a COPY without its `--flags`.
fn copy_paths(copy: &Instruction) -> Vec<&str> {
    copy.args
        .split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .collect()
}

#[test]
fn the_image_runs_the_binary_the_script_builds_as_a_numeric_non_root_user() {
    let dockerfile = read("Dockerfile");
    let all = instructions(&dockerfile);
    let stages = stages(&all);
    let (_, last) = stages.last().expect("a final stage");

    // `build` compiles with the script; `prebuilt` takes what the script built outside
    // (its default output) from the context; `binary` is one of them (BINARY_FROM, `build`
    // by default), and the final stage copies the binary from it.
    let (build_from, build) = stage_named(&stages, "build");
    let out = build_output(build);
    assert!(
        build_from.starts_with("${RUST_IMAGE}"),
        "the build stage runs in the Rust image: {build_from}"
    );
    let (prebuilt_from, prebuilt) = stage_named(&stages, "prebuilt");
    assert!(
        prebuilt_from.starts_with("scratch"),
        "nothing to pull: {prebuilt_from}"
    );
    let copy = prebuilt
        .iter()
        .find(|i| i.keyword == "COPY")
        .expect("the prebuilt stage copies the binary");
    assert_eq!(
        copy_paths(copy),
        ["target/image/dynamodb-source", out.as_str()],
        "the prebuilt stage copies scripts/build-static's default output to where the build stage puts it"
    );
    let (binary_from, _) = stage_named(&stages, "binary");
    assert!(binary_from.starts_with("${BINARY_FROM}"), "{binary_from}");
    assert_eq!(
        arg_default(&all, "BINARY_FROM").as_deref(),
        Some("build"),
        "a plain `docker build .` compiles"
    );
    let copy = last
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.contains("--from=binary"))
        .expect("the final stage copies from the binary stage");
    assert_eq!(
        copy_paths(copy),
        [out.as_str(), IMAGE_BINARY],
        "COPY {}",
        copy.args
    );

    // Exec-form entrypoint (no shell in the image), the binary's subcommand given by the
    // manifests' args; no CMD, so `args: [controller]` is the whole command line.
    let entrypoint = last
        .iter()
        .rfind(|i| i.keyword == "ENTRYPOINT")
        .expect("an ENTRYPOINT");
    let entrypoint: Vec<String> =
        serde_json::from_str(&entrypoint.args).expect("ENTRYPOINT in exec (JSON) form");
    assert_eq!(entrypoint, [IMAGE_BINARY]);
    assert!(
        !last.iter().any(|i| i.keyword == "CMD"),
        "no CMD: the subcommand comes from the Deployment's args"
    );

    // A numeric user: the adapter's pod sets runAsNonRoot without runAsUser, which the
    // kubelet can only verify for a numeric USER (and scratch has no /etc/passwd).
    let user = last.iter().rfind(|i| i.keyword == "USER").expect("a USER");
    assert_eq!(user.args, format!("{IMAGE_UID}:{IMAGE_UID}"));

    // A static binary needs no libc and no file of a base image: the final stage is
    // scratch plus the binary, and runs nothing (so it builds offline).
    let script = read("scripts/build-static");
    assert!(
        script.contains("+crt-static"),
        "the script links statically"
    );
    let (final_from, _) = stages.last().unwrap();
    assert_eq!(final_from.split_whitespace().next(), Some("scratch"));
    let copies: Vec<&Instruction> = last.iter().filter(|i| i.keyword == "COPY").collect();
    assert_eq!(copies.len(), 1, "only the binary: {copies:?}");
    for i in last {
        assert!(
            ["ARG", "LABEL", "COPY", "USER", "ENTRYPOINT"].contains(&i.keyword.as_str()),
            "the final stage must not need a runtime: {i:?}"
        );
    }

    // OCI labels, with the licence of Cargo.toml.
    let labels: String = last
        .iter()
        .filter(|i| i.keyword == "LABEL")
        .map(|i| i.args.clone())
        .collect();
    for key in [
        "title",
        "description",
        "licenses",
        "source",
        "version",
        "revision",
        "created",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{key}=")),
            "OCI label {key} missing"
        );
    }
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("license = \"Apache-2.0\"") && labels.contains("licenses=\"Apache-2.0\"")
    );
}

#[test]
fn the_script_builds_a_static_locked_release_binary_for_the_gnu_target() {
    let script = read("scripts/build-static");
    for needle in [
        "TARGET=x86_64-unknown-linux-gnu",
        "--target \"$TARGET\"",
        "-C target-feature=+crt-static",
        "--release",
        "--locked",
        "--bin dynamodb-source",
        "OUT=${1:-target/image/dynamodb-source}",
    ] {
        assert!(
            script.contains(needle),
            "scripts/build-static lacks {needle}"
        );
    }
    let makefile = read("Makefile");
    let target = makefile
        .split("\nimage-binary:")
        .nth(1)
        .expect("a make image-binary target");
    let recipe = target.lines().nth(1).unwrap_or_default();
    assert!(recipe.contains("scripts/build-static"), "{recipe}");
}

#[test]
fn the_manifests_run_the_image_entrypoint_with_a_subcommand() {
    // No `command:` (it would replace the ENTRYPOINT); the role is the first argument.
    for (file, args) in [
        ("config/manager/controller.yaml", "args: [controller]"),
        (
            "charts/dynamodb-source/templates/deployment.yaml",
            "args: [controller]",
        ),
    ] {
        let text = read(file);
        assert!(text.contains(args), "{file} runs the image with {args}");
        assert!(
            !text.contains("command:"),
            "{file} overrides the ENTRYPOINT"
        );
    }
    // The chart's pod runs as the image's user.
    let values = read("charts/dynamodb-source/values.yaml");
    assert!(values.contains(&format!("runAsUser: {IMAGE_UID}")));
}

#[test]
fn the_build_context_holds_every_workspace_member_and_target() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        "an allowlist: first exclude everything"
    );
    let allowed: Vec<&str> = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let included = |path: &str| {
        allowed
            .iter()
            .any(|a| path == *a || path.starts_with(&format!("{a}/")))
    };

    let cargo: toml_lite::Document = toml_lite::parse(&read("Cargo.toml"));
    let mut needed = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "scripts/build-static".to_owned(),
    ];
    needed.extend(cargo.array("workspace", "members"));
    needed.extend(cargo.paths());
    assert!(needed.iter().any(|p| p == "src/main.rs"), "{needed:?}");
    assert!(needed.iter().any(|p| p == "crates/api"), "{needed:?}");
    for path in &needed {
        assert!(included(path), ".dockerignore leaves out {path}");
        assert!(repo_path(path).exists(), "{path} does not exist");
    }
    // The prebuilt binary (`BINARY_FROM=prebuilt`), and nothing else of the outputs or
    // local state.
    assert!(
        included("target/image/dynamodb-source"),
        ".dockerignore leaves out the prebuilt binary"
    );
    for path in ["target", ".venv", ".git", "tests"] {
        assert!(!included(path), ".dockerignore lets {path} in");
    }
}

/// Just enough TOML for Cargo.toml: `members = [...]` of a table, and every `path = "..."`
/// of `[[bin]]` / `[[bench]]` / `[lib]` targets.
mod toml_lite {
    pub struct Document {
        text: String,
    }

    pub fn parse(text: &str) -> Document {
        Document {
            text: text.to_owned(),
        }
    }

    impl Document {
        pub fn array(&self, table: &str, key: &str) -> Vec<String> {
            let body = self
                .text
                .split(&format!("[{table}]"))
                .nth(1)
                .unwrap_or_default();
            let start = body
                .find(&format!("{key} = ["))
                .unwrap_or_else(|| panic!("[{table}] {key}"));
            let list = &body[start..];
            let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
            list.split(',')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        }

        pub fn paths(&self) -> Vec<String> {
            let mut paths = Vec::new();
            let mut in_target = false;
            for line in self.text.lines() {
                let line = line.trim();
                if line.starts_with('[') {
                    in_target = matches!(
                        line,
                        "[[bin]]" | "[[bench]]" | "[[test]]" | "[[example]]" | "[lib]"
                    );
                } else if in_target && line.starts_with("path") {
                    let value = line.split_once('=').expect("path = ...").1;
                    paths.push(value.trim().trim_matches('"').to_owned());
                }
            }
            paths
        }
    }
}

/// True if the ELF file has no program interpreter (PT_INTERP): a static executable.
fn is_static_elf(path: &Path) -> bool {
    let bytes = std::fs::read(path).expect("read the binary");
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(bytes[4], 2, "ELF64");
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|n| {
        let at = phoff + n * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// Only when `make image-binary` built it (a release build takes minutes, so `make test`
/// does not): the image's binary is static, is this version, and resolves host names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_binary_is_static_and_resolves_localhost_when_built() {
    let binary = repo_path("target/image/dynamodb-source");
    if !binary.exists() {
        eprintln!(
            "skipped: {} not built (make image-binary)",
            binary.display()
        );
        return;
    }
    assert!(
        is_static_elf(&binary),
        "{} is dynamically linked",
        binary.display()
    );
    assert!(
        !is_static_elf(Path::new(crate::support::adapter::BINARY)),
        "the ELF check must tell a dynamic binary apart"
    );
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("dynamodb-source {}", env!("CARGO_PKG_VERSION"))
    );

    // Both the AWS endpoint and the sink by the name `localhost`: the SDK's and the
    // sink client's connections go through getaddrinfo of the static glibc.
    let moto = crate::support::moto::Moto::start().await;
    let arn = moto.create_table("image", "NEW_AND_OLD_IMAGES");
    let receiver = Receiver::accepting().await;
    let port = receiver.port;
    let moto_port = moto.endpoint.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_port = free_port();
    let mut child = Command::new(&binary)
        .arg("adapter")
        .env_clear()
        .envs([
            ("K_SINK", format!("http://localhost:{port}/")),
            ("ARN", arn),
            ("AWS_ENDPOINT_URL", format!("http://localhost:{moto_port}")),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("STARTING_POSITION", "TRIM_HORIZON".into()),
            ("IDLE_POLL_MAX", "PT0.2S".into()),
            ("METRICS_PORT", metrics_port.to_string()),
            (
                "CHECKPOINT_FILE",
                dir.path().join("cp.json").display().to_string(),
            ),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("adapter.log")).expect("log"))
        .spawn()
        .expect("the image binary starts");
    moto.python(&["workload", "image", "1", "1", "1"]);
    let delivered = eventually(
        "an event delivered by the static binary",
        Duration::from_secs(60),
        async || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the static binary exited with {status}: {}",
                    std::fs::read_to_string(dir.path().join("adapter.log")).unwrap_or_default()
                );
            }
            let got = receiver.acknowledged();
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        delivered[0].header("ce-type"),
        Some("com.amazon.dynamodb.stream_record")
    );
}

/// Builds the image with `scripts/build-image` (buildah, offline) from `context`; returns
/// the manifest digest it printed.
fn build_image(context: &Path, archive: &Path) -> String {
    let out = Command::new(repo_path("scripts/build-image"))
        .arg("--context")
        .arg(context)
        .arg("--archive")
        .arg(archive)
        .args(["--tag", "localhost/dynamodb-source:repro"])
        .output()
        .expect("scripts/build-image runs");
    assert!(
        out.status.success(),
        "scripts/build-image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "a digest: {digest:?}");
    digest
}

/// The image the Dockerfile makes, built here where no base image can be pulled: it
/// builds, holds only the binary (as root-owned, read-only executable), runs as
/// 65532:65532, and the same binary gives the same digest wherever and whenever it is
/// built.
#[test]
fn the_image_builds_offline_from_the_prebuilt_binary_and_is_reproducible() {
    let binary = repo_path("target/image/dynamodb-source");
    if let Some(reason) = crate::support::node::cannot_build_images() {
        eprintln!("skipped: {reason}");
        return;
    }
    assert!(
        binary.exists(),
        "{} not built (make image-binary; make test builds it)",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let first = build_image(&repo_path(""), &dir.path().join("first.tar"));

    // Another context (another path, fresh file times) holding only the Dockerfile and
    // the same binary: the same digest.
    let context = dir.path().join("context");
    std::fs::create_dir_all(context.join("target/image")).expect("mkdir");
    std::fs::copy(repo_path("Dockerfile"), context.join("Dockerfile")).expect("copy");
    std::fs::copy(&binary, context.join("target/image/dynamodb-source")).expect("copy");
    let second = build_image(&context, &dir.path().join("second.tar"));
    assert_eq!(first, second, "same binary, same image digest");

    // What the archive holds: one layer with only the binary; the config's user and
    // entrypoint.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let tar = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("tar").args(args).output().expect("tar runs");
        assert!(out.status.success(), "tar {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tar(&[
        "-xf".as_ref(),
        dir.path().join("first.tar").as_os_str(),
        "-C".as_ref(),
        unpacked.as_os_str(),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(unpacked.join("manifest.json")).expect("manifest.json"),
    )
    .expect("JSON");
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = unpacked.join(layers[0].as_str().expect("a layer path"));
    let listing = tar(&[
        "-tvf".as_ref(),
        layer.as_os_str(),
        "--numeric-owner".as_ref(),
    ]);
    let entries: Vec<&str> = listing.lines().collect();
    assert_eq!(entries.len(), 1, "only the binary in the image: {listing}");
    assert!(
        entries[0].starts_with("-r-xr-xr-x 0/0 ") && entries[0].ends_with(" dynamodb-source"),
        "{listing}"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(unpacked.join(manifest[0]["Config"].as_str().expect("Config")))
            .expect("config"),
    )
    .expect("JSON");
    assert_eq!(config["config"]["User"], format!("{IMAGE_UID}:{IMAGE_UID}"));
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([IMAGE_BINARY])
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let size = std::fs::metadata(&layer).expect("layer").len();
    eprintln!("image {first}: one layer of {size} bytes");
}
