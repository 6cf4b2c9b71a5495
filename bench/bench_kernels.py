"""Benchmark: conda-env kernels, ours vs the anchors, same machine, same run.

1. **Listing kernels** for 10/100/1000 envs: ``CondaEnvKernelSpecManager.get_all_specs()`` over N
   conda-layout prefixes vs jupyter_client's ``KernelSpecManager.get_all_specs()`` over N kernelspecs
   installed the usual way. The anchor's specs are made by running ``python -m ipykernel install
   --prefix P --name envK`` once and copying the resulting directory (kernel.json + logos) N times
   with the env's absolute python in argv, which is byte-for-byte what N installs write (running
   ipykernel N=1000 times would take minutes and measure nothing extra). Prefixes for ours have the
   layout discovery reads (``conda-meta/``, ``bin/python``, ``lib/python3.X/site-packages/ipykernel``).
   "warm" is a running server (stat-validated cache), "cold" a fresh manager (first call).
2. **Server start** (POST /hub/api/users/U/server until ready) on a real hub with
   ``conda-kernel`` vs plain ``LocalProcessSpawner``, same system user, rounds alternated.
3. **Kernel start** (start until ``kernel_info`` reply) in a real env that has
   ``etc/conda/activate.d`` (our ``sh`` wrapper sources it) vs a plain kernelspec with the same
   absolute python and no activation, rounds alternated.

Usage: ``python bench/bench_kernels.py [--sizes 10 100 1000] [--repeat 30] [--kernel-rounds 30]
[--server-rounds 12] [--skip-server]``. Run as root (part 2 makes a system user). Prints markdown
tables and writes bench/results/kernels.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import report, summary, use_harness  # noqa: E402

use_harness()

from envs import make_conda_env, python_version, trusted_dir  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

from jupyterhub_lab_ext.kernels import server_env  # noqa: E402
from jupyterhub_lab_ext.kernels.kernelspec import CondaEnvKernelSpecManager  # noqa: E402

VENV_PY = Path(sys.executable)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------------- 1. listing


def make_layout_prefix(prefix: Path, pyver: str) -> None:
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "history").write_text("==> bench <==\n")
    (prefix / "conda-meta" / f"python-{pyver}.0-bench_0.json").write_text("{}")
    (prefix / "bin").mkdir()
    os.symlink("/usr/bin/python3", prefix / "bin" / "python")
    (prefix / "lib" / f"python{pyver}" / "site-packages" / "ipykernel").mkdir(parents=True)


def usual_kernelspec(work: Path) -> Path:
    """One kernelspec written by ``python -m ipykernel install --prefix`` (the usual way)."""
    subprocess.run(
        [str(VENV_PY), "-m", "ipykernel", "install", "--prefix", str(work / "inst"),
         "--name", "template"],
        check=True, capture_output=True,
    )  # fmt: skip
    return work / "inst" / "share" / "jupyter" / "kernels" / "template"


@contextlib.contextmanager
def trusted_tmp(prefix: str):
    """A temporary directory where shared envs pass the trust rule (/tmp is writable by all)."""
    path = trusted_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bench_listing(sizes: list[int], repeat: int) -> tuple[list[list], dict]:
    rows, data = [], {}
    pyver = python_version()
    with trusted_tmp("bench-list-") as work:
        template = usual_kernelspec(work)
        for n in sizes:
            root = work / f"envs{n}"
            kdir = work / f"kernels{n}"
            root.mkdir()
            kdir.mkdir()
            spec = json.loads((template / "kernel.json").read_text())
            for i in range(n):
                prefix = root / f"env{i:04d}"
                make_layout_prefix(prefix, pyver)
                dest = kdir / f"env{i:04d}"
                shutil.copytree(template, dest)
                spec["argv"][0] = str(prefix / "bin" / "python")
                spec["display_name"] = f"Python 3 (env{i:04d})"
                (dest / "kernel.json").write_text(json.dumps(spec, indent=1))

            anchor = KernelSpecManager(kernel_dirs=[str(kdir)], ensure_native_kernel=False)
            assert len(anchor.get_all_specs()) == n

            def ours_mgr(root=root):
                return CondaEnvKernelSpecManager(
                    shared_env_dirs=[str(root)], user_env_dirs=[], read_environments_txt=False
                )

            warm = ours_mgr()
            assert len(warm.get_all_specs()) == n
            cold_times = timed(lambda: ours_mgr().get_all_specs(), max(3, repeat // 4))
            # alternate anchor / ours in rounds so drift hits both
            a_times, w_times = [], []
            for _ in range(repeat):
                a_times += timed(anchor.get_all_specs, 1)
                w_times += timed(warm.get_all_specs, 1)
            a, w, c = summary(a_times), summary(w_times), summary(cold_times)
            rows.append(
                [n, a["median"] * 1e3, w["median"] * 1e3, w["median"] / a["median"],
                 c["median"] * 1e3, c["median"] / a["median"]]
            )  # fmt: skip
            data[str(n)] = {"anchor_s": a, "ours_warm_s": w, "ours_cold_s": c,
                            "ratio_warm": w["median"] / a["median"],
                            "ratio_cold": c["median"] / a["median"]}  # fmt: skip
    return rows, data


# ---------------------------------------------------------------------------- 3. kernel start


def bench_kernel_start(rounds: int) -> tuple[list[list], dict]:
    with trusted_tmp("bench-kernel-") as work:
        root = work / "envs"
        prefix = make_conda_env(
            root / "actv", activate={"bench.sh": 'export BENCH_ACTIVATED="$CONDA_PREFIX"\n'}
        )
        plain_dir = work / "kernels" / "plain"
        plain_dir.mkdir(parents=True)
        python = str(prefix / "bin" / "python")
        (plain_dir / "kernel.json").write_text(
            json.dumps(
                {"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 "display_name": "plain", "language": "python"}
            )
        )  # fmt: skip
        anchor = KernelSpecManager(kernel_dirs=[str(work / "kernels")], ensure_native_kernel=False)
        ours = CondaEnvKernelSpecManager(
            shared_env_dirs=[str(root)], user_env_dirs=[], read_environments_txt=False
        )
        assert ours.get_kernel_spec("shared-actv").argv[0] == "/bin/sh"

        def start(ksm, name):
            km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
            t0 = time.perf_counter()
            km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=60)
                elapsed = time.perf_counter() - t0
                if ksm is ours:  # the wrapper really activated the env
                    msg_id = kc.execute("import os; print(os.environ['BENCH_ACTIVATED'])")
                    reply = kc.get_shell_msg(timeout=30)
                    assert reply["parent_header"]["msg_id"] == msg_id
                    assert reply["content"]["status"] == "ok", reply["content"]
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            return elapsed

        start(anchor, "plain")  # warm the file cache once for both
        start(ours, "shared-actv")
        a_times, o_times = [], []
        for i in range(rounds):  # ABBA order
            if i % 2 == 0:
                a_times.append(start(anchor, "plain"))
                o_times.append(start(ours, "shared-actv"))
            else:
                o_times.append(start(ours, "shared-actv"))
                a_times.append(start(anchor, "plain"))
        a, o = summary(a_times), summary(o_times)
        ratio = o["median"] / a["median"]
        rows = [
            ["kernel start, median (s)", a["median"], o["median"], ratio],
            ["kernel start, min (s)", a["min"], o["min"], o["min"] / a["min"]],
        ]
        return rows, {"plain_s": a, "activation_wrapper_s": o, "ratio": ratio}


# ---------------------------------------------------------------------------- 2. server start


def bench_server_start(rounds: int) -> tuple[list[list], dict]:
    from harness import Hub, ensure_installed, remove_test_users, wait_until

    ensure_installed()  # the hubs and servers import the installed package: make it this tree

    prefix = f"jb{secrets.token_hex(2)}-"
    work = trusted_dir("bench-server-")  # shared envs must be safe from users up to /
    hubs: dict[str, Hub] = {}
    try:
        shared = work / "envs"
        make_conda_env(shared / "py")
        (work / "homes").mkdir(mode=0o755)
        name = f"{prefix}user"
        subprocess.run(["useradd", "-m", "-b", str(work / "homes"), name], check=True)
        configs = {
            "LocalProcessSpawner": "c.JupyterHub.spawner_class = 'localprocess'\n",
            "conda-kernel": (
                "c.JupyterHub.spawner_class = 'conda-kernel'\n"
                f"c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]\n"
            ),
        }
        for label, cfg in configs.items():
            hub = Hub(work / label, config=cfg, authenticator=None)
            hubs[label] = hub.start()
            resp = hub.api("POST", f"users/{name}")
            assert resp.status_code in (201, 409), resp.text

        def spawn(hub: Hub) -> float:
            t0 = time.perf_counter()
            resp = hub.api("POST", f"users/{name}/server", json={})
            assert resp.status_code in (201, 202), resp.text
            wait_until(
                lambda: (hub.user_model(name) or {}).get("servers", {}).get("", {}).get("ready"),
                timeout=120,
                interval=0.05,
                what="server ready",
            )
            elapsed = time.perf_counter() - t0
            hub.stop_server(name)
            return elapsed

        times: dict[str, list[float]] = {k: [] for k in hubs}
        for label in hubs:  # one unmeasured spawn each (imports into the page cache)
            spawn(hubs[label])
        labels = list(hubs)
        for i in range(rounds):  # ABBA order: whoever goes second after a stop is not always us
            for label in labels if i % 2 == 0 else labels[::-1]:
                times[label].append(spawn(hubs[label]))
        a, o = summary(times["LocalProcessSpawner"]), summary(times["conda-kernel"])
        ratio = o["median"] / a["median"]
        hooks = mixin_hook_times(name, shared)
        ksm_import = ksm_import_times()
        alone = server_alone_times(shared, rounds)
        a2, o2 = alone["plain_s"], alone["ours_s"]
        rows = [
            [
                "server alone (jupyter lab to /api/status), median (s)",
                a2["median"],
                o2["median"],
                o2["median"] / a2["median"],
            ],
            ["server start, median (s)", a["median"], o["median"], ratio],
            ["server start, min (s)", a["min"], o["min"], o["min"] / a["min"]],
            ["hub: mixin hooks per spawn (ms)", 0.0, hooks["median"] * 1e3, "-"],
            ["server: import of the kernelspec manager (ms)", 0.0, ksm_import["median"] * 1e3, "-"],
        ]
        return rows, {
            "local_process_s": a,
            "conda_kernel_s": o,
            "ratio": ratio,
            "mixin_hooks_s": hooks,
            "ksm_import_s": ksm_import,
            "server_alone": alone,
        }
    finally:
        for hub in hubs.values():
            hub.stop()
        remove_test_users(prefix, [work / "homes"])
        shutil.rmtree(work, ignore_errors=True)


def mixin_hook_times(user: str, shared: Path, repeat: int = 50) -> dict:
    """What the mixin adds on the hub per spawn: apply_user_options (discovery) + get_args."""
    import asyncio
    from types import SimpleNamespace

    from jupyterhub_lab_ext.spawner.local import LocalCondaKernelSpawner

    spawner = LocalCondaKernelSpawner(
        user=SimpleNamespace(name=user), shared_env_dirs=[str(shared)]
    )

    async def run() -> list[float]:
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await spawner.apply_conda_user_options({"profile": "shared/py"})
            spawner.get_args()
            out.append(time.perf_counter() - t0)
        return out

    return summary(asyncio.run(run()))


def server_alone_times(shared: Path, rounds: int) -> dict:
    """JupyterLab's own start (no hub), with and without our kernelspec manager, ABBA rounds."""
    import socket

    import httpx

    def once(extra: list[str]) -> float:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        runtime = tempfile.mkdtemp(prefix="jhle-bench-rt-")
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=runtime)
        env[server_env.SHARED_ENV_DIRS] = str(shared)
        argv = [str(VENV_PY.parent / "jupyter-lab"), "--allow-root", "--no-browser",
                f"--port={port}", "--ip=127.0.0.1", "--IdentityProvider.token=bench", *extra]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, start_new_session=True)  # fmt: skip
        try:
            deadline = t0 + 60
            while time.perf_counter() < deadline:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/api/status?token=bench", timeout=1)
                    if r.status_code == 200:
                        return time.perf_counter() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            raise TimeoutError("jupyter lab did not answer /api/status")
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(30)
            shutil.rmtree(runtime, ignore_errors=True)

    ksm = ["--ServerApp.kernel_spec_manager_class="
           "jupyterhub_lab_ext.kernels.kernelspec.CondaEnvKernelSpecManager"]  # fmt: skip
    plain, ours = [], []
    for i in range(rounds):
        if i % 2 == 0:
            plain.append(once([]))
            ours.append(once(ksm))
        else:
            ours.append(once(ksm))
            plain.append(once([]))
    return {"plain_s": summary(plain), "ours_s": summary(ours)}


def ksm_import_times(repeat: int = 5) -> dict:
    """Import of our kernelspec manager in a fresh interpreter that already has jupyter_client."""
    code = (
        "import time, jupyter_client.kernelspec; t = time.perf_counter(); "
        "import jupyterhub_lab_ext.kernels.kernelspec; print(time.perf_counter() - t)"
    )
    out = []
    for _ in range(repeat):
        res = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True, check=True)
        out.append(float(res.stdout.strip()))
    return summary(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--kernel-rounds", type=int, default=30)
    p.add_argument("--server-rounds", type=int, default=12)
    p.add_argument("--skip-server", action="store_true", help="skip part 2 (needs root + a hub)")
    args = p.parse_args(argv)

    data: dict = {}
    rows, data["listing"] = bench_listing(args.sizes, args.repeat)
    report(
        "kernels-listing",
        "1. Listing kernels: get_all_specs() median (ms); target ours/anchor <= 0.5 at 100 envs",
        ["envs", "jupyter_client KSM", "ours warm", "ratio warm", "ours cold", "ratio cold"],
        rows,
        data["listing"],
    )
    if not args.skip_server:
        rows, data["server_start"] = bench_server_start(args.server_rounds)
        report(
            "kernels-server-start",
            "2. Server start, POST to ready; target ratio <= 1.05",
            ["what", "LocalProcessSpawner", "conda-kernel", "ratio"],
            rows,
            data["server_start"],
        )
    rows, data["kernel_start"] = bench_kernel_start(args.kernel_rounds)
    report(
        "kernels-kernel-start",
        "3. Kernel start until kernel_info reply; target ratio <= 1.10",
        ["what", "plain kernelspec", "activation wrapper", "ratio"],
        rows,
        data["kernel_start"],
    )
    report("kernels", "All (JSON)", ["part"], [[k] for k in data], data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
