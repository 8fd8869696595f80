//! The files in `deploy/` agree with the program and with each other: the shipped
//! configuration parses, paths line up with mounts, probes hit the daemon's endpoints, and
//! the hardening the docs promise is present.

use std::path::Path;

use orgwarden::config::Config;
use orgwarden::daemon::Timing;
use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(index) => &v[index],
            Err(_) => &v[key],
        })
}

fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", at(value, path)))
}

fn cluster_config() -> Config {
    let map = yaml("deploy/kubernetes/configmap.yaml");
    // The key has a dot in it, so it is looked up directly rather than through `at`.
    Config::parse(
        map["data"]["orgwarden.toml"].as_str().unwrap(),
        Path::new("configmap.yaml#orgwarden.toml"),
    )
    .unwrap()
}

/// The mount path of the volume called `name` in a pod spec's first container.
fn mount_of<'a>(pod: &'a Value, name: &str) -> &'a str {
    at(pod, "containers.0.volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some(name))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("no mount named {name}"))
}

fn check_pod(pod: &Value, config: &Config) {
    let key = config.openai.admin_key_file.as_ref().unwrap();
    assert!(key.starts_with(mount_of(pod, "admin-key")), "{key:?}");
    assert!(config.storage.path.starts_with(mount_of(pod, "data")));
    assert_eq!(mount_of(pod, "config"), "/etc/orgwarden");
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    let container = at(pod, "containers.0.securityContext");
    assert_eq!(container["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(container["allowPrivilegeEscalation"].as_bool(), Some(false));
    // Secret files are root-owned; only the group bit (fsGroup) lets user 10001 read them.
    let secret = at(pod, "volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("admin-key"))
        .unwrap();
    let mode = secret["secret"]["defaultMode"].as_u64().unwrap();
    assert_eq!(mode & 0o040, 0o040, "mode {mode:o} is not group-readable");
    assert_eq!(mode & 0o007, 0, "mode {mode:o} is world-readable");
}

#[test]
fn cluster_configuration_parses_and_its_schedule_and_listen_address_are_valid() {
    // Parsing validates the schedule and the address; the daemon takes them as they are.
    let config = cluster_config();
    let timing = Timing::from_config(&config.schedule);
    assert!(!timing.schedule.expression().is_empty());
    assert!(config.server.listen.is_some());
}

#[test]
fn deployment_is_a_single_hardened_pod_probed_on_the_daemon_endpoints() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(at(&deployment, "spec.replicas").as_u64(), Some(1));
    assert_eq!(text(&deployment, "spec.strategy.type"), "Recreate");
    let pod = at(&deployment, "spec.template.spec");
    check_pod(pod, &cluster_config());
    assert_eq!(
        text(pod, "containers.0.livenessProbe.httpGet.path"),
        "/healthz"
    );
    assert_eq!(
        text(pod, "containers.0.readinessProbe.httpGet.path"),
        "/readyz"
    );
    let port = at(pod, "containers.0.ports.0.containerPort")
        .as_u64()
        .unwrap();
    let listen = cluster_config().server.listen.unwrap();
    assert_eq!(u64::from(listen.port()), port, "{listen} vs {port}");
    assert_eq!(at(pod, "containers.0.args.0").as_str(), Some("daemon"));
    // Long enough for the 30 s run deadline and 5 s rollback grace.
    assert!(at(pod, "terminationGracePeriodSeconds").as_u64().unwrap() > 35);
}

#[test]
fn cronjob_runs_audit_notify_without_overlap() {
    let cron = yaml("deploy/kubernetes/cronjob.yaml");
    assert_eq!(text(&cron, "spec.concurrencyPolicy"), "Forbid");
    let pod = at(&cron, "spec.jobTemplate.spec.template.spec");
    check_pod(pod, &cluster_config());
    let args: Vec<&str> = at(pod, "containers.0.args")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["audit", "--notify"]);
    assert_eq!(text(pod, "restartPolicy"), "Never");
}

#[test]
fn kustomization_lists_files_that_exist() {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let file = format!("deploy/kubernetes/{}", resource.as_str().unwrap());
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(&file).exists(),
            "{file}"
        );
    }
}

fn unit_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_its_credential_path_matches_the_documented_config() {
    let unit = read("deploy/systemd/orgwarden.service");
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "orgwarden"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert!(
            unit_value(&unit, key).contains(&value),
            "{key}={value} missing"
        );
    }
    let credential = unit_value(&unit, "LoadCredential")[0];
    let (name, source) = credential.split_once(':').unwrap();
    assert_eq!(source, "/etc/orgwarden/admin_key");
    let expected = format!("admin_key_file = \"/run/credentials/orgwarden.service/{name}\"");
    assert!(
        unit.contains(&expected),
        "the unit's comment must show {expected}"
    );
    assert!(read("docs/deploy.md").contains(&expected));
    // The database it names lives in the StateDirectory.
    let exec = unit_value(&unit, "ExecStart")[0];
    assert!(exec.contains("--db /var/lib/orgwarden/"), "{exec}");
    assert!(exec.ends_with(" daemon"), "{exec}");
}

#[test]
fn container_image_runs_as_a_non_root_user_with_ca_certificates_and_a_data_volume() {
    let dockerfile = read("deploy/Dockerfile");
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(final_stage.starts_with("debian:bookworm-slim"));
    assert!(final_stage.contains("ca-certificates"));
    assert!(final_stage.contains("USER 10001:10001"));
    assert!(final_stage.contains("VOLUME [\"/var/lib/orgwarden\"]"));
    // The Kubernetes pods run as the same user the image creates.
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(
        at(&deployment, "spec.template.spec.securityContext.runAsUser").as_u64(),
        Some(10001)
    );
}

/// `systemd-analyze verify` on the unit, with ExecStart pointed at the built binary (verify
/// insists the program exists). Needs systemd-analyze: `scripts/test.sh` installs it.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = read("deploy/systemd/orgwarden.service")
        .replace("/usr/local/bin/orgwarden", env!("CARGO_BIN_EXE_orgwarden"));
    let path = dir.path().join("orgwarden.service");
    std::fs::write(&path, unit).unwrap();
    let output = std::process::Command::new(crate::support::tools::Tool::SystemdAnalyze.require())
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The template unit for several organizations runs each instance as hardened as the single
/// unit, with the instance's own configuration, key, user and database.
#[test]
fn systemd_template_unit_keeps_each_organization_apart_and_as_hardened_as_the_single_unit() {
    let single = read("deploy/systemd/orgwarden.service");
    let template = read("deploy/systemd/orgwarden@.service");
    let per_instance = [
        "Description",
        "ExecStart",
        "LoadCredential",
        "User",
        "StateDirectory",
        "WorkingDirectory",
    ];
    let settings = |unit: &str| -> Vec<String> {
        unit.lines()
            .filter(|line| !line.starts_with('#') && line.contains('='))
            .filter(|line| {
                !per_instance
                    .iter()
                    .any(|key| line.starts_with(&format!("{key}=")))
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        settings(&template),
        settings(&single),
        "the rest is the single unit's"
    );
    for (key, value) in [
        ("User", "orgwarden-%i"),
        ("StateDirectory", "orgwarden-%i"),
        ("WorkingDirectory", "/var/lib/orgwarden-%i"),
        (
            "LoadCredential",
            "openai_admin_key:/etc/orgwarden/%i/admin_key",
        ),
    ] {
        assert_eq!(unit_value(&template, key), [value], "{key}");
    }
    let exec = unit_value(&template, "ExecStart")[0];
    assert!(
        exec.contains("--config /etc/orgwarden/%i/orgwarden.toml"),
        "{exec}"
    );
    assert!(
        exec.contains("--db /var/lib/orgwarden-%i/orgwarden.db"),
        "{exec}"
    );
    // The key path each instance's configuration names, in the unit and in the docs.
    let expected = "admin_key_file = \"/run/credentials/orgwarden@prod.service/openai_admin_key\"";
    assert!(
        template.contains(expected),
        "the unit's comment must show {expected}"
    );
    assert!(read("docs/deploy.md").contains(expected));
}

/// `systemd-analyze verify` on an instance of the template unit.
#[test]
fn systemd_template_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = read("deploy/systemd/orgwarden@.service")
        .replace("/usr/local/bin/orgwarden", env!("CARGO_BIN_EXE_orgwarden"));
    std::fs::write(dir.path().join("orgwarden@.service"), unit).unwrap();
    let output = std::process::Command::new(crate::support::tools::Tool::SystemdAnalyze.require())
        .arg("verify")
        .arg(dir.path().join("orgwarden@prod.service"))
        .output()
        .expect("systemd-analyze runs");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The arguments of the daemon's `docker run -d` in docs/deploy.md.
fn documented_docker_run() -> String {
    let docs = read("docs/deploy.md");
    docs.split("docker run -d")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/deploy.md shows the daemon's `docker run`")
        .to_owned()
}

/// The longest a graceful stop takes: the run in flight 30 s, its roll-back 5 s, the outbox
/// flush 30 s and 5 s for a delivery try still going (docs/deploy.md, "Signals").
const GRACEFUL_STOP_SECS: u64 = 30 + 5 + 30 + 5;

#[test]
fn every_deployment_waits_out_a_graceful_stop_before_killing_the_daemon() {
    let unit = read("deploy/systemd/orgwarden.service");
    let systemd = unit_value(&unit, "TimeoutStopSec")[0];
    let systemd: u64 = systemd
        .strip_suffix('s')
        .unwrap_or(systemd)
        .parse()
        .unwrap();
    assert!(systemd >= GRACEFUL_STOP_SECS, "TimeoutStopSec={systemd}");
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let kubernetes = at(
        &deployment,
        "spec.template.spec.terminationGracePeriodSeconds",
    )
    .as_u64()
    .unwrap();
    assert!(kubernetes >= GRACEFUL_STOP_SECS, "{kubernetes}");
    // Docker's own default is 10 s, then SIGKILL: the documented `docker run` must say more.
    let run = documented_docker_run();
    let docker: u64 = run
        .split_once("--stop-timeout ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no --stop-timeout in `docker run -d{run}`"));
    assert!(docker >= GRACEFUL_STOP_SECS, "--stop-timeout {docker}");
}

#[test]
fn the_documented_container_mounts_the_configuration_folder_so_a_reload_sees_edits() {
    // A bind-mounted file keeps the inode it had at start: an edit saved by renaming a new
    // file over it never reaches the container, and SIGHUP reloads the old contents.
    let run = documented_docker_run();
    assert!(run.contains(":/etc/orgwarden:ro"), "docker run -d{run}");
    assert!(
        !run.contains(":/etc/orgwarden/orgwarden.toml"),
        "docker run -d{run}"
    );
    let dockerfile = read("deploy/Dockerfile");
    assert!(!dockerfile.contains(":/etc/orgwarden/orgwarden.toml"));
}
