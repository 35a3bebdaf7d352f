//! VM pods' guest, booted for real with qemu (TCG here, KVM where it works): our
//! agent answers over virtio-serial, and a broken guest or hypervisor fails with
//! a message naming the cause and leaves no qemu behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crio_tests::kata::{guest, initramfs_with_init};
use crio_tests::require_root;
use kata_shim::agent_channel::{self, ChannelError};
use kata_shim::vmm::{tsc_khz, Accel, Hypervisor, Qemu, VmSpec, VmmError};

const QEMU: &str = "qemu-system-x86_64";
/// A TCG boot takes about a second here; this leaves room for a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

fn spec(run_dir: &Path, initramfs: &Path) -> VmSpec {
    VmSpec {
        kernel: guest().kernel.clone(),
        initramfs: initramfs.to_path_buf(),
        memory_mib: 256,
        vcpus: 1,
        run_dir: run_dir.to_path_buf(),
        accel: Accel::detect(),
        tsc_khz: tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
    }
}

fn qemu() -> Qemu {
    Qemu {
        binary: QEMU.into(),
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vm_boots_its_agent_answers_and_it_powers_off() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(dir.path(), &guest().initramfs);
    let started = Instant::now();
    let mut vm = qemu().launch(&spec).await.expect("launch");
    let agent = agent_channel::connect(&spec.agent_socket(), BOOT_TIMEOUT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; console: {}",
                std::fs::read_to_string(spec.console_log()).unwrap_or_default()
            )
        });
    let booted = started.elapsed();
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
async fn a_guest_without_an_agent_is_named_and_its_vm_stopped() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let initramfs = dir.path().join("silent.cpio");
    initramfs_with_init(&initramfs, "exec /bin/busybox sleep 1000");
    let spec = spec(dir.path(), &initramfs);
    let mut vm = qemu().launch(&spec).await.expect("launch");
    let err = agent_channel::connect(&spec.agent_socket(), Duration::from_secs(5))
        .await
        .expect_err("nothing answers");
    assert!(matches!(err, ChannelError::NoHello(_)), "{err}");
    assert!(
        err.to_string().contains("did not answer within 5s"),
        "{err}"
    );
    let pid = vm.pid();
    vm.stop().await.expect("stop");
    assert!(!alive(pid), "qemu {pid} still runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_hypervisor_or_a_bad_option_is_named() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(dir.path(), &guest().initramfs);
    let missing = Qemu {
        binary: dir.path().join("no-qemu"),
    };
    let err = missing.launch(&spec).await.expect_err("no binary");
    assert!(matches!(err, VmmError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("no-qemu"), "{err}");

    // A kernel file that is no kernel: qemu exits before the guest runs, and the
    // error carries its own words.
    let mut corrupt = spec.clone();
    corrupt.kernel = dir.path().join("vmlinux");
    std::fs::write(&corrupt.kernel, "not a kernel").expect("write");
    let err = qemu().launch(&corrupt).await.expect_err("qemu refuses");
    assert!(matches!(err, VmmError::Exited { .. }), "{err}");
    assert!(err.to_string().contains(QEMU), "{err}");
    assert!(
        err.to_string().contains("kernel"),
        "qemu's own reason: {err}"
    );
}
