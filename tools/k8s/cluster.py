"""A throwaway control plane: etcd and kube-apiserver on free loopback ports, as controller-runtime's envtest does.

Certificates come from a throwaway CA (cryptography): the apiserver's serving certificate (SAN 127.0.0.1), an
admin client certificate (O=system:masters) and, on demand, client certificates for any user, so tests can run
the operator as its ServiceAccount under the RBAC of deploy/. No controller-manager, scheduler or kubelet: nothing
garbage-collects, no Deployment gets Pods, namespaces never finish deleting.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CRDS = REPO / "deploy" / "helm" / "litefunctions" / "crds"


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Authority:
    """A throwaway CA that signs the serving and client certificates."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lf-test-ca")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        groups: tuple[str, ...] = (),
        server: bool = False,
        ips: tuple[str, ...] = ("127.0.0.1",),
        names: tuple[str, ...] = ("localhost",),
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for a client (CN = user, O = groups) or a server (SANs `ips` and `names`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)


def kubeconfig_text(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str = "admin") -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"""apiVersion: v1
kind: Config
clusters:
- name: lf-test
  cluster:
    server: {server}
    certificate-authority-data: {b64(ca_pem)}
users:
- name: {user}
  user:
    client-certificate-data: {b64(cert_pem)}
    client-key-data: {b64(key_pem)}
contexts:
- name: lf-test
  context:
    cluster: lf-test
    user: {user}
    namespace: default
current-context: lf-test
"""


@dataclass
class Cluster:
    """etcd + kube-apiserver from `bin_dir`, state and logs under `work_dir` (put it on tmpfs if you can).

    By default the apiserver serves on loopback for the operator's tests (no Service endpoints, no ServiceAccount
    admission). tools/k8s/node.py sets `address` to an address pods can reach, turns `service_accounts` on and adds
    its flags with `apiserver_args`."""

    bin_dir: Path
    work_dir: Path
    ready_timeout: float = 90.0
    authority: Authority = field(default_factory=Authority)
    address: str = "127.0.0.1"
    """Where the apiserver listens and what it advertises (the `kubernetes` Service's endpoint)."""
    service_cidr: str = "10.0.0.0/24"
    service_accounts: bool = False
    """The ServiceAccount admission plugin (pods get tokens); needs a controller-manager to sign them."""
    authorization_mode: str = "RBAC"
    apiserver_args: tuple[str, ...] = ()
    url: str = ""
    kubeconfig: Path = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubeconfig = self.work_dir / "kubeconfig"

    def _write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.work_dir / "pki" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.work_dir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self) -> Cluster:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = self._etcd_data_dir()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=lf-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lf-test={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
        )
        ca = self._write("ca.crt", _pem_cert(self.authority.cert))
        service_ip = str(ipaddress.ip_network(self.service_cidr)[1])
        serving_cert, serving_key = self.authority.issue(
            "kube-apiserver",
            server=True,
            ips=("127.0.0.1", self.address, service_ip),
            names=("localhost", *KUBERNETES_NAMES),
        )
        self._write("ca.key", _pem_key(self.authority.key))
        admin_cert, admin_key = self.authority.issue("lf-admin", groups=("system:masters",))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_path = self._write("sa.key", _pem_key(sa_key))
        self.url = f"https://{self.address}:{api_port}"
        loopback = ipaddress.ip_address(self.address).is_loopback
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={api_port}",
                f"--cert-dir={self.work_dir / 'pki'}",
                f"--tls-cert-file={self._write('apiserver.crt', serving_cert)}",
                f"--tls-private-key-file={self._write('apiserver.key', serving_key)}",
                f"--client-ca-file={ca}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_path}",
                f"--service-account-signing-key-file={sa_path}",
                f"--service-cluster-ip-range={self.service_cidr}",
                # loopback cannot be the kubernetes Service's endpoint
                *(["--endpoint-reconciler-type=none"] if loopback else []),
                *([] if self.service_accounts else ["--disable-admission-plugins=ServiceAccount"]),
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
                f"--authorization-mode={self.authorization_mode}",
                *self.apiserver_args,
            ],
        )
        self.kubeconfig.write_text(kubeconfig_text(self.url, _pem_cert(self.authority.cert), admin_cert, admin_key))
        self.kubeconfig.chmod(0o600)
        self._admin = (admin_cert, admin_key)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _etcd_data_dir(self) -> Path:
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            return Path(os.path.join(shm, f"lf-etcd-{os.getpid()}-{free_port()}"))
        return self.work_dir / "etcd"

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.work_dir / "pki" / "ca.crt"))
        cert = self._write("admin.crt", self._admin[0])
        key = self._write("admin.key", self._admin[1])
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        ctx = self._ssl_context()
        last = ""
        while time.monotonic() < deadline:
            for name, proc in zip(("etcd", "kube-apiserver"), self._procs, strict=False):
                if proc.poll() is not None:
                    raise ClusterError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ClusterError(
            f"kube-apiserver not ready after {self.ready_timeout}s ({last}):\n{self.log_tail('kube-apiserver')}"
        )

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = (), path: Path | None = None) -> Path:
        """A kubeconfig authenticating as `user` in `groups` (e.g. a ServiceAccount's
        `system:serviceaccount:NS:NAME` with group `system:serviceaccounts`)."""
        cert, key = self.authority.issue(user, groups=groups)
        path = path or self.work_dir / f"kubeconfig-{user.replace(':', '_')}"
        path.write_text(kubeconfig_text(self.url, _pem_cert(self.authority.cert), cert, key, user=user))
        path.chmod(0o600)
        return path

    def kubectl(self, *args: str, kubectl: str = "kubectl", input: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def install_crds(self, kubectl: str = "kubectl", folder: Path = CRDS) -> None:
        """Apply the CRDs (server side) and wait until they are Established."""
        self.kubectl("apply", "--server-side", "-f", str(folder), kubectl=kubectl)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(folder), kubectl=kubectl)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        for path in Path("/dev/shm").glob(f"lf-etcd-{os.getpid()}-*"):
            shutil.rmtree(path, ignore_errors=True)
