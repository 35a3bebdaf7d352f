#!/usr/bin/python3
"""Runs one pod with one container on an installed crio, as the kubelet would, and
checks it: the CRI client of tests/package-install.sh (Debian 12 has no crictl).

package-pod.py --socket SOCK --root ROOT --image REF --cgroup-parent CG --pb DIR

Needs Debian's python3-grpcio and python3-protobuf, and DIR holding api_pb2.py,
generated from protocols/proto/runtime/v1/api.proto by protoc (protobuf-compiler).
ROOT is the installed root the daemon runs chrooted in: paths the daemon names
(the container's log) are read under it. Prints what it checks; exits 1 on the
first failure, after removing the pod.
"""

import argparse
import sys
import time

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--cgroup-parent", required=True)
    p.add_argument("--pb", required=True)
    p.add_argument("--name", default="pkgtest")
    args = p.parse_args()
    sys.path.insert(0, args.pb)
    import api_pb2 as cri  # noqa: E402 (generated at test time)

    channel = grpc.insecure_channel("unix://" + args.socket)
    grpc.channel_ready_future(channel).result(timeout=30)

    def rpc(service, method, request, response, timeout=120):
        call = channel.unary_unary(
            f"/runtime.v1.{service}/{method}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as e:
            print(f"FAILED {method}: {e.code().name}: {e.details()}", flush=True)
            raise SystemExit(1) from None

    def runtime(method, request, timeout=120):
        response = getattr(cri, method + "Response")
        return rpc("RuntimeService", method, request, response, timeout)

    def image(method, request):
        return rpc("ImageService", method, request, getattr(cri, method + "Response"))

    def check(ok, what):
        print(("ok     " if ok else "FAILED ") + what, flush=True)
        if not ok:
            raise SystemExit(1)

    v = runtime("Version", cri.VersionRequest())
    check(v.runtime_name != "", f"Version: {v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})")

    # NetworkReady waits for the CNI conflist the package installed.
    deadline = time.monotonic() + 20
    while True:
        status = runtime("Status", cri.StatusRequest())
        conditions = {c.type: c for c in status.status.conditions}
        ready = all(conditions.get(t) and conditions[t].status for t in ("RuntimeReady", "NetworkReady"))
        if ready or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for t in ("RuntimeReady", "NetworkReady"):
        c = conditions.get(t)
        check(c is not None and c.status, f"Status {t}" + (f" ({c.reason}: {c.message})" if c and not c.status else ""))
    handlers = sorted(h.name for h in status.runtime_handlers if h.name)
    check("runc" in handlers, f"Status lists the handlers {handlers}")

    pulled = image("PullImage", cri.PullImageRequest(image=cri.ImageSpec(image=args.image)))
    check(pulled.image_ref != "", f"PullImage {args.image} -> {pulled.image_ref}")

    namespaces = cri.NamespaceOption(pid=cri.CONTAINER)
    log_dir = f"/var/log/pods/default_{args.name}"
    pod = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=args.name, uid=f"uid-{args.name}", namespace="default"),
        hostname=args.name,
        log_directory=log_dir,
        labels={"app": args.name},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=args.cgroup_parent,
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=namespaces),
        ),
    )
    pod_id = runtime("RunPodSandbox", cri.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    failed = True
    try:
        s = runtime("PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
        check(s.state == cri.SANDBOX_READY, f"RunPodSandbox {pod_id[:12]}: {cri.PodSandboxState.Name(s.state)}")
        check(s.network.ip.startswith("10.85."), f"the pod's IP on the default network: {s.network.ip!r}")

        container = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="hello"),
            image=cri.ImageSpec(image=args.image),
            command=["/bin/sh", "-c", 'echo "hello from $(cat /etc/hostname)"; exec sleep 300'],
            log_path="hello.log",
            linux=cri.LinuxContainerConfig(
                security_context=cri.LinuxContainerSecurityContext(namespace_options=namespaces)
            ),
        )
        cid = runtime(
            "CreateContainer",
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=container, sandbox_config=pod),
        ).container_id
        runtime("StartContainer", cri.StartContainerRequest(container_id=cid))
        want = f"hello from {args.name}"
        log_file = f"{args.root}{log_dir}/hello.log"
        deadline = time.monotonic() + 15
        log = ""
        while time.monotonic() < deadline:
            try:
                with open(log_file, encoding="utf-8", errors="replace") as f:
                    log = f.read()
            except FileNotFoundError:
                pass
            if want in log:
                break
            time.sleep(0.2)
        c = runtime("ContainerStatus", cri.ContainerStatusRequest(container_id=cid)).status
        check(c.state == cri.CONTAINER_RUNNING, f"container {cid[:12]}: {cri.ContainerState.Name(c.state)}")
        check(want in log, f"its output in {log_dir}/hello.log: {log.strip()!r}")
        out = runtime("ExecSync", cri.ExecSyncRequest(container_id=cid, cmd=["cat", "/etc/hostname"], timeout=10))
        check(
            out.exit_code == 0 and out.stdout.decode().strip() == args.name,
            f"ExecSync cat /etc/hostname: exit {out.exit_code}, {out.stdout.decode().strip()!r}",
        )
        failed = False
    finally:
        # Also after a failed check: the pod goes, as the kubelet would remove it.
        runtime("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        runtime("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    left = runtime("ListPodSandbox", cri.ListPodSandboxRequest()).items
    check(not left, f"StopPodSandbox, RemovePodSandbox: {len(left)} pods left")

    # The packages carry no guest for the kata handler: its pods are refused with a
    # reason, and the daemon serves on.
    kata = cri.PodSandboxConfig()
    kata.CopyFrom(pod)
    kata.metadata.name = kata.hostname = args.name + "-kata"
    kata.metadata.uid = "uid-" + kata.metadata.name
    started = time.monotonic()
    try:
        channel.unary_unary(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            request_serializer=cri.RunPodSandboxRequest.SerializeToString,
            response_deserializer=cri.RunPodSandboxResponse.FromString,
        )(cri.RunPodSandboxRequest(config=kata, runtime_handler="kata"), timeout=60)
        check(False, "RunPodSandbox on the kata handler without its guest was accepted")
    except grpc.RpcError as e:
        took = time.monotonic() - started
        check(True, f"RunPodSandbox on the kata handler without its guest ({took:.1f} s): {e.code().name}: {e.details()}")
    left = runtime("ListPodSandbox", cri.ListPodSandboxRequest()).items
    check(not left, f"the daemon serves on, {len(left)} pods left")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
