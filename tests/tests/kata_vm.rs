//! VM pods' guest, booted for real with qemu (TCG here, KVM where it works): our
//! agent answers over virtio-serial, and a broken guest or hypervisor fails with
//! a message naming the cause and leaves no qemu behind.

use std::path::Path;
use std::time::Duration;

use crio_tests::bundle::Bundle;
use crio_tests::kata::{guest, initramfs_with_init, qemus_under};
use crio_tests::process::alive;
use crio_tests::require_root;
use kata_shim::agent_channel::{Agent, ChannelError, Stream};
use kata_shim::boot::{boot, BootError};
use kata_shim::config::KataConfig;
use kata_shim::vmm::{Qemu, RunningVm, VmSpec, VmmError};

const QEMU: &str = "qemu-system-x86_64";
/// A TCG boot takes about a second here; this leaves room for a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// The shim's VM (its defaults) with the test guest's kernel and `initramfs`.
fn spec(run_dir: &Path, initramfs: &Path) -> VmSpec {
    KataConfig {
        kernel: guest().kernel.clone(),
        initramfs: initramfs.to_path_buf(),
        ..KataConfig::from_env(|_| None)
    }
    .vm_spec(run_dir.to_path_buf())
}

fn qemu() -> Qemu {
    Qemu {
        binary: QEMU.into(),
    }
}

/// Boots the agent's VM in `dir`: its spec, the VM, the agent and the boot time.
async fn boot_vm(dir: &Path) -> (VmSpec, RunningVm, Agent, Duration) {
    let spec = spec(dir, &guest().initramfs);
    let booted = boot(&qemu(), &spec, BOOT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (spec, booted.vm, booted.agent, booted.boot_time)
}

/// A container's whole stdout or stderr, read through the agent to its end.
async fn read_all(agent: &Agent, id: &str, stream: Stream) -> String {
    read_all_of(agent, id, "", stream).await
}

/// The whole stdout or stderr of a container's init or exec'd process.
async fn read_all_of(agent: &Agent, id: &str, exec_id: &str, stream: Stream) -> String {
    let mut all = Vec::new();
    loop {
        let chunk = agent
            .read_stream(id, exec_id, stream, 4096)
            .await
            .expect("read");
        if chunk.is_empty() {
            return String::from_utf8_lossy(&all).into_owned();
        }
        all.extend(chunk);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vm_boots_its_agent_answers_and_it_powers_off() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, mut vm, agent, booted) = boot_vm(dir.path()).await;
    let check = agent.check(Duration::from_secs(10)).await.expect("check");
    eprintln!(
        "guest {} answered {booted:?} after launch (agent ready {} ms after its kernel started)",
        check.kernel_release, check.ready_after_ms
    );
    // The guest's own kernel, not the host's.
    let host = nix::sys::utsname::uname().expect("uname");
    assert!(
        check.kernel_release.starts_with("6.1."),
        "{}",
        check.kernel_release
    );
    assert_ne!(check.kernel_release, host.release().to_string_lossy());
    assert_eq!(check.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(check.ready_after_ms > 0);

    agent
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    let status = vm
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("wait")
        .expect("qemu exits once the guest powers off");
    assert!(status.success(), "qemu: {status}");
    assert!(!alive(vm.pid()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_in_the_guest_from_a_shared_bundle() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (spec, mut vm, agent, _) = boot_vm(dir.path()).await;
    let t = Duration::from_secs(30);
    let bundle = spec.shared_dir().join("c1");
    Bundle::create(
        &bundle,
        &[
            "sh",
            "-c",
            "uname -r > /result; cat /proc/1/cmdline >> /result; exit 7",
        ],
        false,
    );
    let pid = agent
        .create_container("c1", "c1", false, false, t)
        .await
        .expect("create");
    assert!(pid > 1, "the guest pid of the container's init: {pid}");
    let err = agent
        .create_container("c1", "c1", false, false, t)
        .await
        .expect_err("twice");
    assert!(err.to_string().contains("exists"), "{err}");
    agent.start_container("c1", t).await.expect("start");
    assert_eq!(agent.wait_container("c1", "", t).await.expect("wait"), 7);
    // Written in the guest, through the container's rootfs, seen on the host: the
    // guest's kernel, and the container's own PID 1 (its shell), not the host's.
    let result = std::fs::read_to_string(bundle.join("rootfs/result")).expect("result");
    let mut lines = result.lines();
    let release = lines.next().unwrap_or_default();
    assert!(release.starts_with("6.1."), "{result}");
    assert_ne!(
        release,
        nix::sys::utsname::uname()
            .expect("uname")
            .release()
            .to_string_lossy()
    );
    assert!(
        lines.next().unwrap_or_default().starts_with("sh"),
        "{result}"
    );
    agent.remove_container("c1", t).await.expect("remove");
    let err = agent.wait_container("c1", "", t).await.expect_err("gone");
    assert!(err.to_string().contains("not found"), "{err}");

    // A long-running one, ended by a signal: 128 + SIGKILL.
    let bundle = spec.shared_dir().join("c2");
    Bundle::create(&bundle, &["sleep", "1000"], false);
    agent
        .create_container("c2", "c2", false, false, t)
        .await
        .expect("create");
    agent.start_container("c2", t).await.expect("start");
    // A process exec'd into it: its own output, exit status, then forgotten.
    let process = serde_json::to_vec(&crio_tests::bundle::process(
        &["sh", "-c", "echo from exec; exit 4"],
        false,
    ))
    .expect("json");
    let pid = agent
        .exec_process("c2", "e1", &process, false, false, t)
        .await
        .expect("exec");
    assert!(pid > 1);
    assert_eq!(
        read_all_of(&agent, "c2", "e1", Stream::STDOUT).await,
        "from exec\n"
    );
    assert_eq!(agent.wait_container("c2", "e1", t).await.expect("wait"), 4);
    let err = agent
        .exec_process("c2", "e1", &process, false, false, t)
        .await
        .expect_err("the same exec id twice");
    assert!(err.to_string().contains("exists"), "{err}");
    agent.remove_process("c2", "e1", t).await.expect("forget");
    let err = agent
        .wait_container("c2", "e1", t)
        .await
        .expect_err("forgotten");
    assert!(err.to_string().contains("not found"), "{err}");
    agent
        .signal_container("c2", "", 9, false, t)
        .await
        .expect("kill");
    assert_eq!(agent.wait_container("c2", "", t).await.expect("wait"), 137);
    agent.remove_container("c2", t).await.expect("remove");

    // Its stdio, through the agent: stdin in, stdout and stderr apart, to their end.
    let bundle = spec.shared_dir().join("c4");
    Bundle::create(
        &bundle,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; read line; echo got $line; cat",
        ],
        false,
    );
    agent
        .create_container("c4", "c4", true, false, t)
        .await
        .expect("create");
    agent.start_container("c4", t).await.expect("start");
    agent
        .write_stdin("c4", "", b"hello\nrest of it", t)
        .await
        .expect("write");
    agent.close_stdin("c4", "", t).await.expect("close");
    let (out, err) = tokio::join!(
        read_all(&agent, "c4", Stream::STDOUT),
        read_all(&agent, "c4", Stream::STDERR)
    );
    assert_eq!(out, "out\ngot hello\nrest of it");
    assert_eq!(err, "err\n");
    assert_eq!(agent.wait_container("c4", "", t).await.expect("wait"), 0);
    let err = agent
        .write_stdin("c4", "", b"late", t)
        .await
        .expect_err("stdin closed");
    assert!(err.to_string().contains("no stdin"), "{err}");
    agent.remove_container("c4", t).await.expect("remove");

    let err = agent
        .create_container("c3", "../escape", false, false, t)
        .await
        .expect_err("bad name");
    assert!(err.to_string().contains("bundle"), "{err}");
    agent.shutdown(t).await.expect("shutdown");
    vm.wait_exit(Duration::from_secs(20))
        .await
        .expect("wait")
        .expect("qemu exits");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_without_an_agent_is_named_and_its_vm_stopped() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let initramfs = dir.path().join("silent.cpio");
    initramfs_with_init(&initramfs, "exec /bin/busybox sleep 1000");
    let spec = spec(dir.path(), &initramfs);
    let err = boot(&qemu(), &spec, Duration::from_secs(5))
        .await
        .expect_err("nothing answers");
    assert!(
        matches!(
            err,
            BootError::Agent {
                source: ChannelError::NoHello(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("did not answer within 5s"),
        "{err}"
    );
    assert_eq!(
        qemus_under(dir.path()),
        Vec::<u32>::new(),
        "no qemu is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_hypervisor_or_a_corrupt_kernel_is_named() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(dir.path(), &guest().initramfs);
    let missing = Qemu {
        binary: dir.path().join("no-qemu"),
    };
    let err = boot(&missing, &spec, BOOT_TIMEOUT)
        .await
        .expect_err("no binary");
    assert!(
        matches!(err, BootError::Vmm(VmmError::Spawn { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("no-qemu"), "{err}");

    // A kernel file that is no kernel: qemu exits before the guest runs, and the
    // error carries its own words.
    let mut corrupt = spec.clone();
    corrupt.kernel = dir.path().join("vmlinux");
    std::fs::write(&corrupt.kernel, "not a kernel").expect("write");
    let err = boot(&qemu(), &corrupt, BOOT_TIMEOUT)
        .await
        .expect_err("qemu refuses");
    assert!(
        matches!(err, BootError::Vmm(VmmError::Exited { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(QEMU), "{err}");
    assert!(
        err.to_string().contains("kernel"),
        "qemu's own reason: {err}"
    );
}
