"""A real single-node Kubernetes cluster for tests: the control plane of cluster.py plus a node that runs pods.

    etcd, kube-apiserver            cluster.Cluster, on the machine's own address (pods reach it via the
                                    `kubernetes` Service through kube-proxy, so it cannot be loopback)
    kube-controller-manager         service-account tokens, garbage collector, Deployments, EndpointSlices
    kube-scheduler
    containerd (v2) + runc          all state under the work dir, restrict_oom_score_adj, a local pause image
    kubelet                         cgroup v1, cgroupfs, CNI bridge `bridge` with host-local IPAM on `pod_cidr`
    kube-proxy                      iptables mode, Services on `service_cidr`
    CoreDNS                         a host process on the node address; the `kube-dns` Service (clusterDNS) points at it
    kube-router                     its NetworkPolicy controller only (--run-firewall), a host process
    metrics-server                  a host process behind the `v1beta1.metrics.k8s.io` APIService

Every add-on runs as a host process with a client certificate from the cluster's CA and its own RBAC, so there is
no image to pull. Teardown deletes the pods (so CNI DEL runs), stops everything by PID, then removes what the
node left outside the work dir and compares the machine with the snapshot taken before the start (`leftovers`).
One node per machine at a time (a lock file): the kubelet's cgroups, the KUBE-* chains and ports 10250/53 on the
node address are machine-wide.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.k8s import images
from tools.k8s.cluster import Authority, Cluster, ClusterError, free_port, kubeconfig_text

NODE_LOCK = Path("/tmp/lf-node.lock")
CNI_BIN_DIR = Path("/usr/lib/cni")
APT_PACKAGES = "runc containernetworking-plugins iptables ipset conntrack"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# sysctls the node changes (ip_forward) or the kubelet / kube-proxy may set; restored at teardown
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# paths outside the work dir that containerd, the kubelet and CNI write to whatever their configuration says
OUTSIDE_PATHS = (
    "/run/containerd",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/opt/containerd",
    "/var/lib/containerd",
    "/run/netns",
    "/etc/kubernetes",
    "/etc/cni",
    "/var/lib/kube-router",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-")


class NodeError(ClusterError):
    pass


@dataclass(frozen=True)
class RegistryAccess:
    """A registry containerd pulls from over plain HTTP (e.g. Zot on 127.0.0.1:PORT), with basic-auth credentials."""

    host: str
    """`HOST:PORT`, as image references name it (`127.0.0.1:5000/lf/app:1`)."""
    username: str = ""
    password: str = ""

    def __post_init__(self) -> None:
        if "/" in self.host or ":" not in self.host:
            raise NodeError(f"registry host must be HOST:PORT without a scheme or path, got {self.host!r}")
        if bool(self.username) != bool(self.password):
            raise NodeError("registry credentials need both a username and a password")


# -- the machine before and after --------------------------------------------------------------------------------


def _run(args: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _read_sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    (Path("/proc/sys") / name).write_text(value + "\n")


def iptables_chains() -> list[str]:
    """`family/table/chain` of every chain, both families."""
    found = []
    for binary in ("iptables", "ip6tables"):
        for table in IPTABLES_TABLES:
            done = _run([binary, "-w", "-t", table, "-S"], check=False)
            found += [f"{binary}/{table}/{line.split()[1]}" for line in done.stdout.splitlines() if line[:3] == "-N "]
    return sorted(found)


def ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    return sorted(_run(["ipset", "list", "-n"], check=False).stdout.split())


def kubepods_cgroups() -> list[str]:
    return sorted(str(path) for path in CGROUP_ROOT.glob("*/kubepods*") if path.is_dir())


def mounts_under(*prefixes: str) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == prefix or point.startswith(prefix.rstrip("/") + "/") for prefix in prefixes):
            found.append(point)
    return found


def nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    return sorted(line.strip() for line in _run(["nft", "list", "tables"], check=False).stdout.splitlines())


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@dataclass
class HostSnapshot:
    """What teardown must give back: sysctls, chains, ipsets, kubepods cgroups, paths outside the work dir."""

    sysctls: dict[str, str | None]
    chains: list[str]
    ipsets: list[str]
    cgroups: list[str]
    paths: dict[str, bool]
    nft: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            sysctls={name: _read_sysctl(name) for name in SYSCTLS},
            chains=iptables_chains(),
            ipsets=ipsets(),
            cgroups=kubepods_cgroups(),
            paths={path: os.path.lexists(path) for path in OUTSIDE_PATHS},
            nft=nft_tables(),
        )


@dataclass
class NodeState:
    """Everything teardown needs, also written to `state_file` so `python -m tools.k8s node-down` can stop a node
    whose supervising process is gone."""

    work_dir: str
    bridge: str
    containerd_socket: str
    before: HostSnapshot
    supervisor: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    kubeconfig: str = ""

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> NodeState:
        try:
            data = json.loads(path.read_text())
            data["before"] = HostSnapshot(**data["before"])
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise NodeError(f"{path} is not a node state file: {exc}") from None


def leftovers(state: NodeState, bin_dir: Path | None = None) -> list[str]:
    """What the node left behind compared with `state.before` (empty after a clean teardown)."""
    found: list[str] = []
    before = state.before
    if link_exists(state.bridge):
        found.append(f"bridge {state.bridge}")
    found += [f"iptables chain {c}" for c in sorted(set(iptables_chains()) - set(before.chains))]
    found += [f"ipset {s}" for s in sorted(set(ipsets()) - set(before.ipsets))]
    found += [f"nftables {t}" for t in sorted(set(nft_tables()) - set(before.nft))]
    found += [f"cgroup {c}" for c in sorted(set(kubepods_cgroups()) - set(before.cgroups))]
    for name, value in before.sysctls.items():
        now = _read_sysctl(name)
        if now != value:
            found.append(f"sysctl {name} = {now} (was {value})")
    found += [f"path {p}" for p, existed in before.paths.items() if not existed and os.path.lexists(p)]
    found += [f"mount {m}" for m in mounts_under(state.work_dir)]
    found += [f"process {name} ({pid})" for name, pid in state.pids.items() if _alive(pid)]
    found += [f"process containerd-shim {pid}" for pid in _shims(state.containerd_socket)]
    return found


# -- stopping things ---------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _shims(socket: str) -> list[int]:
    """PIDs of containerd-shim-runc-v2 processes serving our containerd (their command line names its socket)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
            found.append(int(proc.name))
    return found


def stop_pid(pid: int, timeout: float = 15.0, *, group: bool = True) -> None:
    """SIGTERM the process (group), SIGKILL it after `timeout`; returns once it is gone (or a zombie of ours)."""
    if not _alive(pid):
        return
    kill: Callable[[int, int], None] = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def _unmount_all(prefixes: list[str]) -> None:
    for point in reversed(mounts_under(*prefixes)):
        if _run(["umount", point], check=False).returncode != 0:
            _run(["umount", "-l", point], check=False)


def _remove_chains(before: list[str]) -> None:
    """Delete the KUBE-*/CNI-* chains that were not there before: the jumps to them, then their rules, then them."""
    ours = [c for c in sorted(set(iptables_chains()) - set(before)) if c.split("/")[2].startswith(OUR_CHAIN_PREFIXES)]
    by_table: dict[tuple[str, str], set[str]] = {}
    for entry in ours:
        binary, table, chain = entry.split("/")
        by_table.setdefault((binary, table), set()).add(chain)
    for (binary, table), chains in by_table.items():
        rules = _run([binary, "-w", "-t", table, "-S"], check=False).stdout.splitlines()
        for rule in rules:
            parts = shlex.split(rule)  # comments are quoted and hold spaces
            if parts[:1] == ["-A"] and parts[1] not in chains and "-j" in parts:
                if parts[parts.index("-j") + 1] in chains:
                    _run([binary, "-w", "-t", table, "-D", *parts[1:]], check=False)
        for chain in chains:
            _run([binary, "-w", "-t", table, "-F", chain], check=False)
        for chain in chains:
            _run([binary, "-w", "-t", table, "-X", chain], check=False)


def _remove_cgroups(before: list[str]) -> None:
    for top in sorted(set(kubepods_cgroups()) - set(before)):
        for folder in sorted((p for p in Path(top).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            Path(top).rmdir()


def _stop_processes(state: NodeState, names: tuple[str, ...]) -> None:
    for name in names:
        if name in state.pids:
            stop_pid(state.pids[name])


def _kill_containers(state: NodeState) -> None:
    """Our shims, then any container process their killing left behind (their kubepods cgroups still hold them)."""
    for pid in _shims(state.containerd_socket):
        stop_pid(pid, 5, group=False)
    for top in sorted(set(kubepods_cgroups()) - set(state.before.cgroups)):
        for procs in Path(top).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid_text in procs.read_text().split():
                    os.kill(int(pid_text), signal.SIGKILL)


def _restore_network(state: NodeState, bin_dir: Path | None) -> None:
    # kube-router's own --cleanup-config panics without an apiserver (v2.1.0); the sweep below removes its chains
    if bin_dir is not None and (bin_dir / "kube-proxy").exists():
        _run([str(bin_dir / "kube-proxy"), "--cleanup"], check=False)
    if link_exists(state.bridge):
        _run(["ip", "link", "del", state.bridge], check=False)
    _remove_chains(state.before.chains)
    for name in sorted(set(ipsets()) - set(state.before.ipsets)):
        _run(["ipset", "destroy", name], check=False)
    for table in sorted(set(nft_tables()) - set(state.before.nft)):
        # `table ip filter` etc.: iptables-nft made them for our rules; delete them once no rule is left in them
        family_name = table.split()[1:]
        listing = _run(["nft", "-j", "list", "table", *family_name], check=False).stdout
        objects = json.loads(listing or "{}").get("nftables", [])
        if not any("rule" in item for item in objects):
            _run(["nft", "delete", "table", *family_name], check=False)


def _restore_host(state: NodeState) -> None:
    deadline = time.monotonic() + 10
    _remove_cgroups(state.before.cgroups)
    while set(kubepods_cgroups()) - set(state.before.cgroups) and time.monotonic() < deadline:
        time.sleep(0.2)
        _remove_cgroups(state.before.cgroups)
    for name, value in state.before.sysctls.items():
        if value is not None and _read_sysctl(name) != value:
            with contextlib.suppress(OSError):
                _write_sysctl(name, value)
    for path, existed in state.before.paths.items():
        if not existed and os.path.lexists(path):
            _unmount_all([path])
            shutil.rmtree(path, ignore_errors=True)


def cleanup(state: NodeState, bin_dir: Path | None = None) -> None:
    """Give the machine back: stop every recorded process and our shims, unmount, remove the bridge, our chains,
    ipsets and cgroups, restore the sysctls and remove what did not exist outside the work dir."""
    _stop_processes(state, ("metrics-server", "kube-router", "coredns", "kube-proxy", "kubelet", "kube-scheduler"))
    _stop_processes(state, ("kube-controller-manager", "containerd"))
    _kill_containers(state)
    _stop_processes(state, ("kube-apiserver", "etcd"))
    _unmount_all([state.work_dir])
    _restore_network(state, bin_dir)
    _restore_host(state)


# -- the node ----------------------------------------------------------------------------------------------------


def default_node_ip() -> str:
    """The machine's own address on the interface of its default route (nothing is sent anywhere)."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
    devices = [route["dev"] for route in routes if "dev" in route]
    for device in devices:
        info = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", device]).stdout or "[]")
        for link in info:
            for addr in link.get("addr_info", []):
                if addr.get("scope") == "global":
                    return str(addr["local"])
    raise NodeError("no global IPv4 address on the default route's interface: pass node_ip=")


def check_prerequisites(bin_dir: Path) -> None:
    missing = [tool for tool in ("runc", "iptables", "ipset", "ip", "mount") if shutil.which(tool) is None]
    missing += [
        f"{CNI_BIN_DIR}/{p}" for p in ("bridge", "host-local", "loopback", "portmap") if not (CNI_BIN_DIR / p).exists()
    ]
    if missing:
        raise NodeError(f"missing on this machine: {', '.join(missing)} (apt-get install {APT_PACKAGES})")
    wanted = (
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "coredns",
        "kube-router",
        "metrics-server",
    )
    absent = [name for name in wanted if not (bin_dir / name).is_file()]
    if absent:
        raise NodeError(f"{bin_dir} lacks {', '.join(absent)}: run `python -m tools.k8s build --node`")
    if os.geteuid() != 0:
        raise NodeError("a node needs root (network namespaces, mounts, cgroups, iptables)")


@contextlib.contextmanager
def _machine_lock() -> Iterator[IO[str]]:
    handle = NODE_LOCK.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeError(f"another node is running on this machine (it holds {NODE_LOCK})") from None
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@dataclass
class Node:
    """A single-node cluster from `bin_dir` (tools.k8s.build.ensure_node()), all state and logs under `work_dir`.

    node = Node(bin_dir, work_dir, registry=RegistryAccess("127.0.0.1:5000", "user", "pass")).start()
    node.kubectl("get", "nodes")
    node.stop()
    """

    bin_dir: Path
    work_dir: Path
    registry: RegistryAccess | None = None
    node_ip: str = ""
    """The node's address and the apiserver's (default: the machine's own address, see default_node_ip)."""
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/24"
    bridge: str = "lfbr0"
    name: str = "lf-node"
    ready_timeout: float = 180.0
    state_file: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    measured_rss: dict[str, int] = field(default_factory=dict)
    """RSS (KiB) of the node's processes, as a test last recorded it with rss_kib()."""
    cluster: Cluster = field(init=False)
    pause: images.LocalImage = field(init=False)
    probe: images.LocalImage = field(init=False)
    state: NodeState = field(init=False)
    _authority: Authority = field(default_factory=Authority)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_dir = self.work_dir.resolve()
        if not self.node_ip:
            self.node_ip = default_node_ip()
        for cidr in (self.pod_cidr, self.service_cidr):
            try:
                ipaddress.ip_network(cidr)
            except ValueError as exc:
                raise NodeError(f"not a CIDR: {cidr!r} ({exc})") from None
        if ipaddress.ip_network(self.pod_cidr).overlaps(ipaddress.ip_network(self.service_cidr)):
            raise NodeError(f"pod_cidr {self.pod_cidr} overlaps service_cidr {self.service_cidr}")
        if len(self.bridge) > 15:
            raise NodeError(f"bridge name {self.bridge!r} is longer than 15 characters")
        self.cluster = Cluster(
            self.bin_dir,
            self.work_dir,
            authority=self._authority,
            address=self.node_ip,
            service_cidr=self.service_cidr,
            service_accounts=True,
            authorization_mode="Node,RBAC",
            apiserver_args=self._apiserver_args(),
        )

    # -- public API ----------------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def dns_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[10])

    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "containerd" / "containerd.sock"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run the cache's kubectl against this node as cluster admin; stdout, or NodeError naming the failure."""
        done = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]]) -> str:
        """Server-side apply YAML text or objects (a list becomes a v1 List)."""
        if isinstance(manifest, list):
            manifest = {"apiVersion": "v1", "kind": "List", "items": manifest}
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)

    def ctr(self, *args: str, check: bool = True) -> str:
        ctr = [str(self.bin_dir / "ctr"), "-a", str(self.containerd_socket), "-n", "k8s.io", *args]
        return _run(ctr, check=check, timeout=300).stdout

    def import_image(self, image: images.LocalImage) -> str:
        """Import an OCI archive into the node's containerd, pinned (pods use it with imagePullPolicy Never or
        IfNotPresent)."""
        self.ctr("images", "import", "--base-name", image.ref.rsplit(":", 1)[0], str(image.archive))
        if image.ref not in self.ctr("images", "ls", "-q").split():
            raise NodeError(f"ctr imported {image.archive} but {image.ref} is not among containerd's images")
        # pinned: the kubelet's image garbage collector never removes it (nothing could pull it back)
        self.ctr("images", "label", image.ref, "io.cri-containerd.pinned=pinned")
        return image.ref

    def create_volumes(self, count: int, size: str = "1Gi", storage_class: str = "lf-local") -> list[str]:
        """`count` hostPath PersistentVolumes of `size` in StorageClass `storage_class` (created if absent, no
        provisioner, WaitForFirstConsumer), their data under the work dir; returns the PV names."""
        if count < 1:
            raise NodeError(f"create_volumes: count must be at least 1, got {count}")
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": storage_class},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            }
        ]
        names = []
        existing = len(list((self.work_dir / "volumes").glob("*"))) if (self.work_dir / "volumes").exists() else 0
        for index in range(existing, existing + count):
            name = f"{storage_class}-{index}"
            folder = self.work_dir / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)
            names.append(name)
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name, "labels": {"lf.tools/node-volume": storage_class}},
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": storage_class,
                        "hostPath": {"path": str(folder), "type": "Directory"},
                    },
                }
            )
        self.apply(objects)
        return names

    # -- start ---------------------------------------------------------------------------------------------------

    def start(self) -> Node:
        check_prerequisites(self.bin_dir)
        self._lock.enter_context(_machine_lock())
        try:
            if link_exists(self.bridge):
                raise NodeError(f"link {self.bridge} exists already: another cluster, or a leftover (ip link del)")
            self.state = NodeState(
                str(self.work_dir), self.bridge, str(self.containerd_socket), HostSnapshot.take(), os.getpid()
            )
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _mark(self, what: str, started: float) -> None:
        self.timings[what] = round(time.monotonic() - started, 2)

    def _start(self) -> None:
        started = time.monotonic()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "pki", "kubelet", "pod-logs", "cni/net.d", "cni/ipam", "containerd", "certs.d"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        self._save()
        _write_sysctl("net/ipv4/ip_forward", "1")
        self.pause = images.pause_image(self.bin_dir)
        self.probe = images.probe_image(self.bin_dir)
        self._write_configs()
        self._spawn(
            "containerd", [str(self.bin_dir / "containerd"), "--config", str(self.work_dir / "containerd.toml")]
        )
        self._wait(
            "containerd",
            lambda: (
                _run([str(self.bin_dir / "ctr"), "-a", str(self.containerd_socket), "version"], check=False).returncode
                == 0
            ),
            30,
        )
        self.import_image(self.pause)
        self.import_image(self.probe)
        self._mark("containerd", started)
        self.cluster.start()
        self.state.pids["etcd"] = self.cluster._procs[0].pid
        self.state.pids["kube-apiserver"] = self.cluster._procs[1].pid
        self.state.kubeconfig = str(self.kubeconfig)
        self._save()
        self._mark("apiserver", started)
        self._start_components()
        self.apply(self._addon_objects())
        self._start_addons()
        self._wait("node Ready", self._node_ready, self.ready_timeout)
        self._mark("node Ready", started)
        self._wait("the default ServiceAccount", lambda: self.kubectl("get", "sa", "default", check=False) != "", 60)
        self._wait("CoreDNS ready", lambda: self._http_ok(f"http://127.0.0.1:{self._ports['coredns-ready']}/ready"), 60)
        self._wait("the metrics API", self._metrics_api_available, 90)
        self._mark("up", started)

    def _save(self) -> None:
        self.state.pids.update({name: proc.pid for name, proc in self._procs.items()})
        if self.state_file is not None:
            self.state.write(self.state_file)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.work_dir / "logs" / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=self.work_dir
            )
        self._procs[name] = proc
        self._save()
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work_dir / "logs" / f"{name}.log"
        if not path.exists():
            return self.cluster.log_tail(name, lines)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise NodeError(
                        f"{name} exited ({proc.returncode}) while waiting for {what}:\n{self.log_tail(name)}"
                    )
            with contextlib.suppress(NodeError, OSError, subprocess.TimeoutExpired):
                if ready():
                    return
            time.sleep(0.25)
        raise NodeError(f"timed out after {timeout}s waiting for {what}")

    @staticmethod
    def _http_ok(url: str) -> bool:
        import urllib.request

        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", self.name, "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _metrics_api_available(self) -> bool:
        out = self.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    # -- configuration -------------------------------------------------------------------------------------------

    def _pki(self, name: str, data: bytes) -> Path:
        path = self.work_dir / "pki" / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def _apiserver_args(self) -> tuple[str, ...]:
        pki = self.work_dir / "pki"
        kubelet_cert, kubelet_key = self._authority.issue("kube-apiserver-kubelet-client", groups=("system:masters",))
        proxy_cert, proxy_key = self._authority.issue("front-proxy-client")
        pki.mkdir(parents=True, exist_ok=True)
        return (
            "--enable-admission-plugins=NodeRestriction",
            "--anonymous-auth=false",
            f"--kubelet-client-certificate={self._pki('apiserver-kubelet-client.crt', kubelet_cert)}",
            f"--kubelet-client-key={self._pki('apiserver-kubelet-client.key', kubelet_key)}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={self._pki('front-proxy-client.crt', proxy_cert)}",
            f"--proxy-client-key-file={self._pki('front-proxy-client.key', proxy_key)}",
            "--enable-aggregator-routing=true",
        )

    def _write_configs(self) -> None:
        w = self.work_dir
        registry = ""
        if self.registry is not None:
            host = self.registry.host
            hosts = w / "certs.d" / host
            hosts.mkdir(parents=True, exist_ok=True)
            (hosts / "hosts.toml").write_text(
                f'server = "http://{host}"\n\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
            )
            if self.registry.username:
                registry = (
                    f"[plugins.'io.containerd.cri.v1.images'.registry.configs.'{host}'.auth]\n"
                    f"  username = {json.dumps(self.registry.username)}\n"
                    f"  password = {json.dumps(self.registry.password)}\n"
                )
        (w / "containerd.toml").write_text(
            f"""version = 3
root = "{w}/containerd/root"
state = "{w}/containerd/state"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "{w}/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{self.pause.ref}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{w}/certs.d"
{registry}[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which("runc")}"
        Root = "{w}/runc"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{w}/cni/net.d"
"""
        )
        conflist = {
            "cniVersion": "1.0.0",
            "name": "lf-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": f"{w}/cni/ipam",
                        "ranges": [[{"subnet": self.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (w / "cni" / "net.d" / "10-lf-node.conflist").write_text(json.dumps(conflist, indent=2) + "\n")
        (w / "resolv.conf").write_text("")  # pods with dnsPolicy Default get no upstream: nothing leaves the machine
        self._ports["kubelet-healthz"] = free_port()
        (w / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    "podLogsDir": f"{w}/pod-logs",
                    "address": self.node_ip,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": self._ports["kubelet-healthz"],
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": f"{w}/pki/ca.crt"},
                    },
                    "authorization": {"mode": "Webhook"},
                    "clusterDomain": "cluster.local",
                    "clusterDNS": [self.dns_ip],
                    "resolvConf": f"{w}/resolv.conf",
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    # imported images share IDs with pulled ones; under the default (NeverVerifyPreloadedImages)
                    # a registry pull of the same image made the kubelet refuse the imported tag ("not present
                    # with pull policy of Never"). Registry credentials live in containerd's config here.
                    "imagePullCredentialsVerificationPolicy": "NeverVerify",
                    "protectKernelDefaults": False,
                },
                indent=2,
            )
        )

    def _kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        cert, key = self._authority.issue(user, groups=groups)
        path = self.work_dir / f"{name}.kubeconfig"
        ca = self.work_dir / "pki" / "ca.crt"
        path.write_text(kubeconfig_text(self.cluster.url, ca.read_bytes(), cert, key, user=user))
        path.chmod(0o600)
        return path

    def _start_components(self) -> None:
        b, w = self.bin_dir, self.work_dir
        pki = w / "pki"
        kcm = self._kubeconfig("kube-controller-manager", "system:kube-controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--profiling=false",
                "--v=1",
            ],
        )
        sched = self._kubeconfig("kube-scheduler", "system:kube-scheduler")
        self._spawn(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--profiling=false",
                "--v=1",
            ],
        )
        kubelet = self._kubeconfig("kubelet", f"system:node:{self.name}", ("system:nodes",))
        self._spawn(
            "kubelet",
            [
                str(b / "kubelet"),
                f"--config={w / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet}",
                f"--root-dir={w / 'kubelet'}",
                f"--cert-dir={w / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.node_ip}",
                "--v=1",
            ],
        )
        proxy = self._kubeconfig("kube-proxy", "system:kube-proxy")
        self._ports["kube-proxy-healthz"] = free_port()
        self._ports["kube-proxy-metrics"] = free_port()
        (w / "kube-proxy.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(proxy)},
                    "mode": "iptables",
                    "clusterCIDR": self.pod_cidr,
                    "hostnameOverride": self.name,
                    "bindAddress": self.node_ip,
                    "healthzBindAddress": f"127.0.0.1:{self._ports['kube-proxy-healthz']}",
                    "metricsBindAddress": f"127.0.0.1:{self._ports['kube-proxy-metrics']}",
                    "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
                    # 0 = leave the machine's conntrack sysctls alone
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                },
                indent=2,
            )
        )
        self._spawn("kube-proxy", [str(b / "kube-proxy"), f"--config={w / 'kube-proxy.yaml'}", "--v=1"])

    def _addon_objects(self) -> list[dict[str, Any]]:
        def svc(name: str, namespace: str, ip: str | None, ports: list[dict[str, Any]]) -> dict[str, Any]:
            spec: dict[str, Any] = {"ports": ports}
            if ip:
                spec["clusterIP"] = ip
            return {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace, "labels": {"k8s-app": name}},
                "spec": spec,
            }

        def endpoints(name: str, namespace: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace},
                "subsets": [{"addresses": [{"ip": self.node_ip}], "ports": ports}],
            }

        def reader(user: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
            name = f"lf-node:{user.removeprefix('system:')}"
            return [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": name},
                    "rules": rules,
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
                },
            ]

        read = ["get", "list", "watch"]
        self._ports["metrics-server"] = free_port()
        dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
        dns_endpoint_ports = [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]
        ms_port = self._ports["metrics-server"]
        return [
            svc("kube-dns", "kube-system", self.dns_ip, dns_ports),
            endpoints("kube-dns", "kube-system", dns_endpoint_ports),
            svc("metrics-server", "kube-system", None, [{"name": "https", "port": 443, "targetPort": ms_port}]),
            endpoints("metrics-server", "kube-system", [{"name": "https", "port": ms_port, "protocol": "TCP"}]),
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
            *reader(
                "system:lf-coredns",
                [
                    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": read},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                ],
            ),
            *reader(
                "system:lf-kube-router",
                [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
                        "verbs": read,
                    },
                    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch", "update"]},
                    {
                        "apiGroups": ["", "events.k8s.io"],
                        "resources": ["events"],
                        "verbs": ["create", "patch", "update"],
                    },
                ],
            ),
            *reader(
                "system:lf-metrics-server",
                [
                    {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces", "configmaps"], "verbs": read},
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
                ],
            ),
            # the aggregated metrics API readable like the built-in system:aggregated-metrics-reader would make it
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": "lf-node:aggregated-metrics-reader",
                    "labels": {
                        "rbac.authorization.k8s.io/aggregate-to-view": "true",
                        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    },
                },
                "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": read}],
            },
        ]

    def _start_addons(self) -> None:
        b, w = self.bin_dir, self.work_dir
        coredns = self._kubeconfig("coredns", "system:lf-coredns")
        self._ports["coredns-ready"] = free_port()
        self._ports["coredns-health"] = free_port()
        (w / "Corefile").write_text(
            f""".:53 {{
    bind {self.node_ip}
    errors
    health 127.0.0.1:{self._ports["coredns-health"]}
    ready 127.0.0.1:{self._ports["coredns-ready"]}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {coredns}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""
        )
        self._spawn("coredns", [str(b / "coredns"), "-conf", str(w / "Corefile")])
        router = self._kubeconfig("kube-router", "system:lf-kube-router")
        self._ports["kube-router-health"] = free_port()
        self._spawn(
            "kube-router",
            [
                str(b / "kube-router"),
                f"--kubeconfig={router}",
                f"--hostname-override={self.name}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                f"--service-cluster-ip-range={self.service_cidr}",
                f"--health-port={self._ports['kube-router-health']}",
                "--metrics-port=0",
                "--v=1",
            ],
        )
        metrics = self._kubeconfig("metrics-server", "system:lf-metrics-server")
        self._spawn(
            "metrics-server",
            [
                str(b / "metrics-server"),
                f"--kubeconfig={metrics}",
                f"--authentication-kubeconfig={metrics}",
                f"--authorization-kubeconfig={metrics}",
                f"--bind-address={self.node_ip}",
                f"--secure-port={self._ports['metrics-server']}",
                f"--cert-dir={w / 'metrics-server'}",
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--metric-resolution=10s",
                "--kubelet-request-timeout=5s",
                "--v=1",
            ],
        )

    # -- stop ----------------------------------------------------------------------------------------------------

    def stop(self) -> float:
        """Delete the workloads (so CNI DEL runs), stop everything, give the machine back; returns the seconds."""
        started = time.monotonic()
        try:
            state = getattr(self, "state", None)
            if state is None:
                return 0.0
            kubelet = self._procs.get("kubelet")
            if kubelet is not None and kubelet.poll() is None and self.cluster.url:
                self.kubectl(
                    "delete",
                    "deployments,statefulsets,daemonsets,replicasets,jobs,pods",
                    "--all",
                    "--all-namespaces",
                    "--grace-period=1",
                    "--wait=true",
                    "--timeout=60s",
                    check=False,
                    timeout=90,
                )
            self._save()
            cleanup(state, self.bin_dir)
            for proc in self._procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
            self.cluster.stop()
            if self.state_file is not None:
                self.state_file.unlink(missing_ok=True)
        finally:
            self._lock.close()
        self.timings["teardown"] = round(time.monotonic() - started, 2)
        return self.timings["teardown"]

    def leftovers(self) -> list[str]:
        return leftovers(self.state)

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each of the node's processes (and the shims together)."""
        out: dict[str, int] = {}
        pids = dict(self.state.pids)
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1])
        shims = 0
        for pid in _shims(self.state.containerd_socket):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        shims += int(line.split()[1])
        out["containerd-shims"] = shims
        return out


def down(state_file: Path, bin_dir: Path | None, timeout: float = 120.0) -> list[str]:
    """Stop the node `state_file` describes: SIGTERM its supervising process (which tears down in order) and wait;
    if that process is gone, stop the recorded processes and clean up here. Returns what is left (ideally [])."""
    state = NodeState.read(state_file)
    if _alive(state.supervisor):
        os.kill(state.supervisor, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(state.supervisor):
            time.sleep(0.2)
    if state_file.exists():  # the supervisor did not finish its teardown
        cleanup(state, bin_dir)
        state_file.unlink(missing_ok=True)
    return leftovers(state)
