"""A private Docker engine and a locally built single-user image for end-to-end tests.

No image registry is reachable from the machines this suite runs on, and the tests must not touch a
Docker engine that someone else uses, so (see ../shared/reference/e2e-recipes.md, "Docker engine"):

- :class:`Dockerd` runs Debian's ``dockerd`` as a child in its own process group, with its own
  ``--data-root`` (on a tmpfs unless ``JHLE_DOCKERD_TMPFS=0``), ``--exec-root``, unix socket and
  containerd namespace in a temp dir, and ``--bridge=none --iptables=false --ip6tables=false``:
  containers get host networking (or none), servers listen on 127.0.0.1. Registry traffic is
  impossible (services prefer local images; registry requests would go to a dead loopback proxy).
  ``swarm_init()`` makes a one-node swarm on 127.0.0.1 and removes its routing-mesh ``ingress``
  network; ``stop()`` removes services and containers, leaves the swarm, stops the daemon by PID,
  kills its stray containerd/shims by PID, unmounts and deletes the dir.
- :func:`singleuser_rootfs` builds the root file system of the single-user image in three cached
  steps, each a tarball under ``/var/cache/jupyterhub-lab-ext`` (``$JHLE_DOCKER_CACHE``) named by a
  hash of its inputs: ``debootstrap --variant=minbase bookworm`` with python3 and python3-venv
  (mirror taken from the machine's own apt sources; changes only with the recipe); then, in a
  chroot, a venv ``/opt/venv`` with jupyterhub, jupyterlab, ipykernel and this package's
  dependencies, every version pinned to the test venv's so hub and servers match (changes with the
  test venv); then this package itself, a wheel built from the working tree (changes with the
  sources, ~10 s). Wheels are fetched on the host with the host's pip config and cache; the chroot
  installs offline.
- :func:`singleuser_image` imports that tarball into a daemon (``docker import``), tagged by the key;
  the image's command is ``/opt/venv/bin/jupyterhub-singleuser``.

Run ``python tests/e2e/docker_env.py`` to build (or find) the image tarball and print its path.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import REPO, SYSTEM_PATH, VENV_BIN, Fatal, Process, wait_until  # noqa: E402

CACHE = Path(os.environ.get("JHLE_DOCKER_CACHE", "/var/cache/jupyterhub-lab-ext"))
SUITE = "bookworm"
INCLUDE = ("python3", "python3-venv")
#: what the image's venv gets besides this package (versions pinned to the test venv's)
IMAGE_REQUIREMENTS = ("jupyterhub", "jupyterlab", "jupyter_server", "ipykernel")
IMAGE_VENV = "/opt/venv"
SINGLEUSER_CMD = f"{IMAGE_VENV}/bin/jupyterhub-singleuser"
IMAGE_REPO = "jhle-singleuser"
#: bump when the build steps below change in a way the hashed inputs do not show
RECIPE = "2"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CHROOT_PATH = f"{IMAGE_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(argv: list[str], *, timeout: float, what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command to completion; on failure raise with its output (never a shell)."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (rc={proc.returncode}): {argv[:4]}...\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _log(msg: str) -> None:
    print(f"[docker_env] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the daemon


class Dockerd:
    """A private ``dockerd`` (Debian ``docker.io``) in ``root`` (a fresh temp dir by default)."""

    def __init__(self, root: Path | None = None, *, tmpfs: bool | None = None):
        # short path: containerd's unix sockets live under the exec root (108-byte limit)
        self.root = Path(root or tempfile.mkdtemp(prefix="jhle-dockerd-", dir="/tmp"))
        self.root.chmod(0o711)
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        token = secrets.token_hex(4)  # [0-9a-f]: valid in containerd namespaces and ifnames
        self.namespace = f"jhle-{token}"
        self.gwbridge_name = f"jhgw{token}"  # a Linux interface name: 15 bytes at most
        if tmpfs is None:  # JHLE_DOCKERD_TMPFS=0: keep the data root on disk
            tmpfs = os.environ.get("JHLE_DOCKERD_TMPFS", "1") != "0"
        self.tmpfs = tmpfs
        self.process: Process | None = None
        self._client = None

    def argv(self) -> list[str]:
        config = self.root / "daemon.json"
        config.write_text("{}\n")  # ignore /etc/docker/daemon.json, whatever it says
        return [
            shutil.which("dockerd") or "/usr/sbin/dockerd",
            f"--config-file={config}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host={self.host}",
            f"--containerd-namespace={self.namespace}",
            f"--containerd-plugins-namespace={self.namespace}-plugins",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
        ]

    @staticmethod
    def daemon_env() -> dict[str, str]:
        """The daemon's environment: no registry is reachable and none may be contacted. Swarm
        workers re-pull a service's image by name before each task unless told to prefer the
        local one; and any registry request that still happens goes to a dead loopback proxy
        (the proxy, not dockerd, would resolve the name, so not even DNS leaves the host)."""
        dead = "http://127.0.0.1:9"
        return {
            "PATH": SYSTEM_PATH,
            "HOME": "/root",
            "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1",
            "HTTP_PROXY": dead,
            "HTTPS_PROXY": dead,
            "http_proxy": dead,
            "https_proxy": dead,
            "NO_PROXY": "",
        }

    @property
    def client(self):
        """A ``docker.DockerClient`` on this daemon's socket."""
        if self._client is None:
            import docker

            self._client = docker.DockerClient(base_url=self.host, timeout=600)
        return self._client

    def start(self, timeout: float = 90) -> Dockerd:
        if self.tmpfs:
            # images and containers in memory: importing is faster, and deleting ~600 MB of
            # layer files from a disk mounted with `discard` takes 15-25 s; a tmpfs goes at once
            data = self.root / "data"
            data.mkdir(mode=0o710)
            _run(
                ["mount", "-t", "tmpfs", "-o", "mode=0710", "jhle-dockerd", str(data)],
                timeout=30,
                what="mount tmpfs for the data root",
            )
        self.process = Process(
            self.argv(), log_path=self.root / "dockerd.log", env=self.daemon_env()
        )
        self.process.start()

        def ready():
            if not self.process.alive():
                raise Fatal("dockerd exited:\n" + self.log_tail())
            return self.client.ping()

        try:
            wait_until(ready, timeout=timeout, interval=0.3, what=f"dockerd on {self.host}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        return self

    def env(self) -> dict[str, str]:
        """Environment for clients (the hub, the docker CLI) of this daemon."""
        return {"DOCKER_HOST": self.host}

    def log_tail(self, lines: int = 40) -> str:
        text = self.process.log_text() if self.process else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- swarm
    def swarm_init(self, port: int) -> str:
        """Make this engine a one-node swarm on 127.0.0.1 (control plane on ``port``). Services
        here use host networking only, so the routing-mesh ``ingress`` network that swarm makes
        by default is removed once it exists."""
        # swarm gives overlay-attached containers a host bridge named docker_gwbridge; made
        # here first, it gets an interface name of its own, so that two private engines in
        # swarm mode on one machine never share (or delete) each other's bridge
        self.client.networks.create(
            "docker_gwbridge",
            driver="bridge",
            options={
                "com.docker.network.bridge.name": self.gwbridge_name,
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.enable_ip_masquerade": "false",
            },
        )
        node_id = self.client.swarm.init(
            advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{port}"
        )
        wait_until(
            lambda: self.client.networks.list(names=["ingress"]),
            timeout=30,
            what="swarm's ingress network",
        )
        for net in self.client.networks.list(names=["ingress"]):
            net.remove()
        wait_until(
            lambda: not self.client.networks.list(names=["ingress"]),
            timeout=30,
            what="ingress network removed",
        )
        return node_id

    def swarm_leave(self) -> None:
        """Remove every service, wait for their containers to go, leave the swarm, and remove
        the bridge that swarm made."""
        client = self.client
        if self.swarm_active():
            for service in client.services.list():
                service.remove()
            wait_until(
                lambda: (
                    not client.containers.list(
                        all=True, filters={"label": "com.docker.swarm.service.id"}
                    )
                ),
                timeout=60,
                what="swarm task containers gone",
            )
            client.swarm.leave(force=True)
        for net in client.networks.list(names=["docker_gwbridge"]):
            net.remove()

    def swarm_active(self) -> bool:
        return self.client.info().get("Swarm", {}).get("LocalNodeState") == "active"

    # -- teardown
    def _remove_everything(self) -> None:
        self.swarm_leave()
        for container in self.client.containers.list(all=True):
            container.remove(force=True, v=True)

    def _stray_pids(self) -> list[int]:
        """containerd and shims of this daemon that outlived it (they run in their own sessions)."""
        pids = []
        needle = str(self.root).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if needle in cmdline or self.namespace.encode() in cmdline:
                pids.append(int(entry))
        return [p for p in pids if p != os.getpid()]

    def _mounts_below_root(self) -> list[str]:
        found = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4]
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
                if point == str(self.root) or point.startswith(f"{self.root}/"):
                    found.append(point)
        return sorted(found, key=len, reverse=True)

    def stop(self) -> None:
        """Remove services/containers, leave the swarm, stop the daemon and delete its dir."""
        started = time.monotonic()
        try:
            if self.process is not None and self.process.alive():
                try:
                    self._remove_everything()
                except Exception as exc:  # still stop the daemon
                    _log(f"cleanup before stop failed: {exc!r}")
        finally:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None
            cleaned = time.monotonic()
            if self.process is not None:
                self.process.stop(timeout=60)
                self.process = None
            for pid in self._stray_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for point in self._mounts_below_root():
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)
            _log(
                f"dockerd stopped: cleanup {cleaned - started:.1f} s,"
                f" shutdown {time.monotonic() - cleaned:.1f} s"
            )


# ----------------------------------------------------------------------------- image inputs


def debian_mirror() -> str:
    """The Debian mirror that this machine's own apt sources name for ``SUITE``."""
    sources_d = Path("/etc/apt/sources.list.d")
    files = sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []
    for path in files:  # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                if line and not line.startswith(("#", " ", "\t")) and ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if (
                "deb" in fields.get("types", [])
                and SUITE in fields.get("suites", [])
                and fields.get("enabled", ["yes"])[0] != "no"
                and fields.get("uris")
            ):
                return fields["uris"][0].rstrip("/")
    lists = [Path("/etc/apt/sources.list")]
    lists += sorted(sources_d.glob("*.list")) if sources_d.is_dir() else []
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def venv_constraints() -> str:
    """``name==version`` of every package in the test venv except this one (pip constraints)."""
    out = _run(
        [str(VENV_BIN / "python"), "-m", "pip", "freeze", "--exclude-editable"],
        timeout=120,
        what="pip freeze",
    ).stdout
    keep = []
    for line in out.splitlines():
        line = line.strip()
        name = re.split(r"[=<>@ ]", line, maxsplit=1)[0].lower().replace("_", "-")
        if "==" in line and " @ " not in line and name != "jupyterhub-lab-ext":
            keep.append(line)
    return "\n".join(sorted(keep, key=str.lower)) + "\n"


def package_source_hash() -> str:
    digest = hashlib.sha256()
    for base in ("jupyterhub_lab_ext", "share"):
        for path in sorted((REPO / base).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(REPO)).encode() + b"\0")
                digest.update(path.read_bytes())
    for name in ("setup.cfg", "pyproject.toml", "setup.py", "MANIFEST.in"):
        if (REPO / name).is_file():
            digest.update(name.encode() + b"\0" + (REPO / name).read_bytes())
    return digest.hexdigest()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- building


@contextlib.contextmanager
def _cache_lock(name: str, *, shared: bool = False):
    """Builders (and pruning) hold it exclusively; readers of a tarball hold it shared."""
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)
    with open(CACHE / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


def _tar_root(root: Path, out: Path) -> None:
    tmp = out.with_name(out.name + ".part")
    _run(
        [
            "tar",
            "--numeric-owner",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./dev/*",
            "--exclude=./tmp/*",
            "-C",
            str(root),
            "-cf",
            str(tmp),
            ".",
        ],
        timeout=900,
        what=f"tar of {root}",
    )
    tmp.rename(out)


def base_rootfs(mirror: str | None = None) -> Path:
    """``debootstrap --variant=minbase`` root with python3 + python3-venv, cached as a tarball."""
    mirror = mirror or debian_mirror()
    key = _key("base", RECIPE, SUITE, ",".join(INCLUDE), mirror)
    out = CACHE / f"rootfs-base-{SUITE}-{key}.tar"
    with _cache_lock("base"):
        if out.is_file():
            return out
        work = Path(tempfile.mkdtemp(prefix="build-base-", dir=CACHE))
        started = time.monotonic()
        try:
            root = work / "root"
            _log(f"debootstrap {SUITE} from {mirror} (about a minute)")
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(INCLUDE)}",
                    SUITE,
                    str(root),
                    mirror,
                ],
                timeout=1800,
                what="debootstrap",
            )
            # package caches only make the tarball bigger
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (root / sub).glob("*"):
                    if path.is_file():
                        path.unlink()
            _tar_root(root, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _log(f"base root {out.name} built in {time.monotonic() - started:.0f} s")
        return out


def _host_pip(args: list[str], *, what: str) -> None:
    """pip of the test venv on the host, with the host's pip config and cache."""
    _run(
        [str(VENV_BIN / "python"), "-m", "pip", *args],
        timeout=1800,
        what=what,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )


def package_requirements() -> list[str]:
    """This package's ``install_requires`` (from setup.cfg)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    text = cfg.get("options", "install_requires", fallback="")
    return [line.strip() for line in text.splitlines() if line.strip()]


_CHROOT_ENV = {
    "PATH": CHROOT_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_CONFIG_FILE": "/dev/null",
}


def _chroot(root: Path, argv: list[str], *, what: str, timeout: float = 1800):
    return _run(["chroot", str(root), *argv], timeout=timeout, what=what, env=_CHROOT_ENV)


def _prune(pattern: str, keep: Path, spare: int = 1) -> None:
    """Delete older cached tarballs of one kind: the current one and ``spare`` others stay."""
    others = sorted((p for p in CACHE.glob(pattern) if p != keep), key=lambda p: p.stat().st_mtime)
    for old in others[: max(0, len(others) - spare)]:
        old.unlink(missing_ok=True)


def deps_rootfs() -> Path:
    """The base root plus ``/opt/venv`` with jupyterhub, jupyterlab, ipykernel and this
    package's dependencies (not the package itself), pinned to the test venv's versions."""
    base = base_rootfs()
    constraints = venv_constraints()
    requirements = [*IMAGE_REQUIREMENTS, *package_requirements()]
    key = _key("deps", RECIPE, base.name, constraints, "\n".join(requirements))
    out = CACHE / f"rootfs-deps-{key}.tar"
    with _cache_lock("deps"):
        if out.is_file():
            return out
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="build-deps-", dir=CACHE))
        try:
            root = work / "root"
            root.mkdir()
            _run(
                ["tar", "--numeric-owner", "-C", str(root), "-xf", str(base)],
                timeout=600,
                what="unpack base root",
            )
            wheels = root / "tmp" / "jhle-wheels"
            wheels.mkdir(parents=True)
            (wheels / "constraints.txt").write_text(constraints)
            (wheels / "requirements.txt").write_text("\n".join(requirements) + "\n")
            _log("fetching wheels on the host")
            _host_pip(
                [
                    "wheel",
                    "-q",
                    "--wheel-dir",
                    str(wheels),
                    "-c",
                    str(wheels / "constraints.txt"),
                    "-r",
                    str(wheels / "requirements.txt"),
                ],
                what="pip wheel (host)",
            )
            _log(f"installing into {IMAGE_VENV} in a chroot")
            _chroot(root, ["/usr/bin/python3", "-m", "venv", IMAGE_VENV], what="venv in chroot")
            _chroot(
                root,
                [
                    f"{IMAGE_VENV}/bin/python",
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-index",
                    "--find-links=/tmp/jhle-wheels",
                    "-c",
                    "/tmp/jhle-wheels/constraints.txt",
                    "-r",
                    "/tmp/jhle-wheels/requirements.txt",
                ],
                what="pip install in chroot",
            )
            shutil.rmtree(wheels)
            _tar_root(root, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune("rootfs-deps-*.tar", out)
        _log(f"deps root {out.name} built in {time.monotonic() - started:.0f} s")
        return out


def singleuser_rootfs() -> tuple[Path, str]:
    """The single-user image's root file system tarball and its key (built when missing): the
    deps root plus this package, installed from a wheel of the working tree."""
    deps = deps_rootfs()
    key = _key("singleuser", RECIPE, deps.name, package_source_hash())
    out = CACHE / f"rootfs-singleuser-{key}.tar"
    with _cache_lock("singleuser"):
        if out.is_file():
            return out, key
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="build-singleuser-", dir=CACHE))
        try:
            root = work / "root"
            root.mkdir()
            _run(
                ["tar", "--numeric-owner", "-C", str(root), "-xf", str(deps)],
                timeout=600,
                what="unpack deps root",
            )
            wheels = root / "tmp" / "jhle-wheels"
            wheels.mkdir(parents=True)
            _host_pip(
                ["wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
                what="pip wheel of this package (host)",
            )
            (wheel,) = wheels.glob("jupyterhub_lab_ext-*.whl")
            _chroot(
                root,
                [
                    f"{IMAGE_VENV}/bin/python",
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-index",
                    "--no-deps",
                    f"/tmp/jhle-wheels/{wheel.name}",
                ],
                what="pip install of this package in chroot",
            )
            # every dependency must be satisfied inside (pip check), and the versions recorded
            _chroot(root, [f"{IMAGE_VENV}/bin/python", "-m", "pip", "check"], what="pip check")
            probe = _chroot(
                root,
                [f"{IMAGE_VENV}/bin/python", "-c", _VERSIONS_PY],
                what="version probe in chroot",
            )
            (root / "etc" / "jhle-image.json").write_text(probe.stdout)
            shutil.rmtree(wheels)
            _run(
                ["chmod", "-R", "a+rX", str(root / IMAGE_VENV.lstrip("/"))],
                timeout=120,
                what="chmod venv",
            )
            _tar_root(root, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune("rootfs-singleuser-*.tar", out)
        _log(f"image root {out.name} built in {time.monotonic() - started:.0f} s")
        return out, key


_VERSIONS_PY = """
import json, importlib.metadata as m
print(json.dumps({n: m.version(n) for n in
    ("jupyterhub", "jupyterlab", "jupyter_server", "ipykernel", "jupyterhub-lab-ext")}))
"""


def singleuser_image(dockerd: Dockerd, rootfs: tuple[Path, str] | None = None) -> str:
    """Import the single-user image into ``dockerd`` (built or found in the cache); its tag.
    ``rootfs`` (a :func:`singleuser_rootfs` result) imports that one: the same image on several
    engines even when the working tree changes in between."""
    import docker

    for _ in range(3):  # another run may prune the tarball between build and import
        tarball, key = rootfs or singleuser_rootfs()
        tag = f"{IMAGE_REPO}:{key}"
        try:
            dockerd.client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        changes = [
            f"ENV PATH={CHROOT_PATH}",
            "ENV LANG=C.UTF-8",
            f'CMD ["{SINGLEUSER_CMD}"]',
            f"LABEL org.jupyterhub-lab-ext.key={key}",
        ]
        started = time.monotonic()
        with _cache_lock("singleuser", shared=True):
            if not tarball.is_file():
                continue
            dockerd.client.api.import_image_from_file(
                str(tarball), repository=IMAGE_REPO, tag=key, changes=changes
            )
        dockerd.client.images.get(tag)  # raises when the import did not produce it
        _log(f"imported {tag} in {time.monotonic() - started:.0f} s")
        return tag
    raise RuntimeError(f"the image tarball kept disappearing from {CACHE}")


def image_versions(dockerd: Dockerd, tag: str) -> dict:
    """Package versions recorded in the image at build time."""
    out = dockerd.client.containers.run(
        tag, ["cat", "/etc/jhle-image.json"], remove=True, network_mode="none"
    )
    return json.loads(out)


if __name__ == "__main__":  # build or find the cached tarball: python tests/e2e/docker_env.py
    t0 = time.monotonic()
    path, image_key = singleuser_rootfs()
    print(f"{path} key={image_key} ({time.monotonic() - t0:.0f} s)")
