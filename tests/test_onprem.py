"""`ray submit cluster.yaml sweep/run.py`: the driver uploaded alone, and cluster/onprem.yaml for real.

`ray submit` copies sweep/run.py alone to ~/run.py on the head and runs `python ~/run.py ...` in the
login shell there. The driver must then take its presets and code from the installed `hwclf`/`sweep`
packages: the fast tests run such a lone copy here. The slow test brings up cluster/onprem.yaml against
an sshd on this machine's loopback and runs cluster/README.md's on-prem commands one by one (`ray up`,
`ray exec`, `ray submit`, `--resume`, `ray rsync-down`, `hwclf report`, `ray down`); the install steps
are the cloud configs' pattern (mount the checkout, install it on the node, run the uploaded driver).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "sweep" / "configs").glob("*.yaml"))


def lone_driver(tmp_path: Path) -> Path:
    """sweep/run.py as `ray submit` leaves it on the head: ~/run.py, no checkout around it."""
    home = tmp_path / "home"
    home.mkdir()
    return Path(shutil.copy(REPO / "sweep" / "run.py", home / "run.py"))


def run_lone(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}  # REPO = "installed" here
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, str(script), *args], cwd=script.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_lone_driver_lists_the_installed_presets(tmp_path):
    assert "demo" in PRESETS
    script = lone_driver(tmp_path)
    proc = run_lone(script, "--preset", "nonexistent")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"sweep: error: --preset: unknown value 'nonexistent'; allowed: {', '.join(PRESETS)}")
    helped = run_lone(script, "--help")  # argparse wraps the list anywhere, even inside a name
    assert helped.returncode == 0 and "".join(f"({', '.join(PRESETS)})".split()) in "".join(helped.stdout.split())


def test_lone_driver_loads_a_preset(tmp_path):
    """`--preset demo` resolves (its name, demo, is what the existing-sweep check sees), without Ray."""
    storage = tmp_path / "storage"
    (storage / "demo").mkdir(parents=True)
    (storage / "demo" / "hwclf-sweep.json").write_text("{}")
    proc = run_lone(lone_driver(tmp_path), "--preset", "demo", "--storage", str(storage))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"sweep: error: {storage / 'demo'} already holds a sweep")


def test_lone_driver_imports_the_installed_packages_not_its_parent_folder(tmp_path):
    """~/run.py once put ~/.. first on sys.path: a hwclf/ or sweep/ there (/home/hwclf, a user's) won."""
    script = lone_driver(tmp_path)
    for package in ("hwclf", "sweep"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('decoy {package} imported')\n")
    proc = run_lone(script, "--preset", "nonexistent")
    assert "decoy" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and f"allowed: {', '.join(PRESETS)}" in proc.stderr


# --------------------------------------------------------------------------- the real launcher, on loopback

SSH_TOOLS = {"/usr/sbin/sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
             "rsync": "rsync", "nc": "netcat-openbsd", "unshare": "util-linux", "nsenter": "util-linux",
             "ip": "iproute2"}
RAY_CORE = {"raylet", "gcs_server"}  # what `ray stop` would take down with another Ray on this machine


class LoopbackHead:
    """A stand-in for a separate head machine: an sshd on 127.0.0.1 in its own PID, network and mount
    namespaces (`unshare`), with its own key, config, home and Ray temp dir in `root`.

    - PID namespace: `ray down` runs a hard-coded `ray stop` on the head, and `ray stop` kills every
      process named like Ray's that its user can see (Ray 2.60 has no address filter): here it sees
      only this head's. Killing the sshd (the namespace's init) ends everything started in it.
    - Network namespace: only a loopback, so nothing listens outside 127.0.0.1 and the head's Ray
      keeps onprem.yaml's ports (6379, dashboard, agents) without meeting another Ray's. The launcher
      reaches the sshd through `auth.ssh_proxy_command` (Ray has no SSH port setting):
      `nsenter --net nc %h PORT`, the `nc %h PORT` that cluster/onprem.yaml documents for a port other
      than 22, entered into the namespace.
    - sshd's SetEnv: HOME (nothing lands in the real ~), RAY_TMPDIR (not /tmp/ray, whose address file
      another Ray owns), no usage stats (no network).
    """

    def __init__(self, root: Path):
        self.root, self.ssh, self.home = root, root / "ssh", root / "home"
        self.port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000  # any: the namespace is empty
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None

    def start(self) -> None:
        self.ssh.mkdir(mode=0o700)
        self.home.mkdir()
        (self.root / "rt").mkdir()
        for key in ("host_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh / key)], check=True)
        shutil.copy(self.ssh / "id_ed25519.pub", self.ssh / "authorized_keys")
        (self.ssh / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.ssh / 'host_key'}
AuthorizedKeysFile {self.ssh / 'authorized_keys'}
PidFile {self.ssh / 'sshd.pid'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv HOME={self.home} RAY_TMPDIR={self.root / 'rt'} TMPDIR={self.root / 'rt'} RAY_USAGE_STATS_ENABLED=0
""")
        # A session starts in the passwd home (/root); a real machine's would be the home above.
        (self.home / ".bashrc").write_text('cd "$HOME"\n')
        inner = (f"ip link set lo up && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && "
                 f"exec /usr/sbin/sshd -D -e -f {self.ssh / 'sshd_config'}")
        self.log = open(self.root / "sshd.log", "w")
        self.proc = subprocess.Popen(["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc",
                                      "--kill-child", "--", "sh", "-c", inner],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline and "Server listening" not in (self.root / "sshd.log").read_text():
            assert self.proc.poll() is None, (self.root / "sshd.log").read_text()
            time.sleep(0.2)
        assert "Server listening on 127.0.0.1" in (self.root / "sshd.log").read_text()
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        self.init_pid = int(children[0])  # the sshd: init of the namespaces

    @property
    def proxy_command(self) -> str:
        return f"nsenter --target {self.init_pid} --net nc %h {self.port}"

    def pids(self) -> list[int]:
        """Host pids of the processes inside the head's PID namespace."""
        ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        out = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == ns:
                    out.append(int(entry.name))
            except OSError:
                pass
        return out

    def interfaces(self) -> str:
        return subprocess.run(["nsenter", "--target", str(self.init_pid), "--net", "ip", "-brief", "addr"],
                              capture_output=True, text=True, check=True).stdout

    def stop(self) -> None:
        """Kill the sshd by its pid; as the namespace's init, everything started in there goes with it.
        Before its pid is known: kill `unshare` (it ignores SIGTERM), whose --kill-child kills the sshd."""
        if self.proc is None:
            return
        try:
            os.kill(self.init_pid or self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.log.close()


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: with the pid, names one process for good (pids are reused)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def ray_cores() -> dict[int, str]:
    """Ray core processes on this machine (another study's, before the test): pid -> start time."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return {pid: start_time(pid) for pid in pids if process_name(pid) in RAY_CORE}


def onprem_test_config(head: LoopbackHead, name: str) -> dict:
    """cluster/onprem.yaml with this machine's loopback as the head (no workers), this test's key and proxy,
    and a fast offline install: a venv that sees the current environment's packages (.pth) and gets the
    project with --no-deps (the real command downloads TensorFlow and Ray). Everything else is the file's."""
    cfg = yaml.safe_load((REPO / "cluster" / "onprem.yaml").read_text())
    cfg["cluster_name"] = name
    cfg["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(head.ssh / "id_ed25519"),
                   "ssh_proxy_command": head.proxy_command}
    venv = head.home / "hwclf-venv"
    site = f"{venv}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    ray_cli = f"#!{venv}/bin/python\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n"
    fast = {
        "-m venv": (f"test -x ~/hwclf-venv/bin/python || ({shlex.quote(sys.executable)} -m venv ~/hwclf-venv && "
                    f"echo {shlex.quote(sysconfig.get_paths()['purelib'])} > {site}/hwclf-test-env.pth && "
                    f"printf %s {shlex.quote(ray_cli)} > ~/hwclf-venv/bin/ray && chmod +x ~/hwclf-venv/bin/ray)"),
        "pip install": "~/hwclf-venv/bin/pip install -q --no-cache-dir --no-deps --no-build-isolation ~/hwclf-build",
    }
    setup = []
    for command in cfg["setup_commands"]:
        swap = [v for k, v in fast.items() if k in command]
        assert len(swap) <= 1, command
        setup.append(swap[0] if swap else command)
    assert sum(a != b for a, b in zip(setup, cfg["setup_commands"])) == 2, "onprem.yaml's install steps moved"
    cfg["setup_commands"] = setup
    return cfg


@pytest.mark.slow
def test_ray_up_submit_resume_report_down_on_a_loopback_head():
    if os.geteuid() != 0:
        pytest.skip("needs root: an sshd for a throwaway key and Linux namespaces (unshare) to run a separate head")
    missing = sorted({pkg for tool, pkg in SSH_TOOLS.items() if not shutil.which(tool)})
    if missing:
        pytest.skip(f"missing tools: apt-get install -y {' '.join(missing)}")
    probe = subprocess.run(["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create namespaces here (a container without CAP_SYS_ADMIN?): {probe.stderr.strip()}")
    ray_cli = Path(sys.executable).parent / "ray"
    assert ray_cli.is_file(), f"no ray CLI beside {sys.executable}"

    others = ray_cores()
    root = Path(tempfile.mkdtemp(prefix="hwop-", dir="/tmp"))  # short: Ray's socket paths live under it
    head = LoopbackHead(root)
    env = {**os.environ, "RAY_TMPDIR": str(root / "launcher"), "TMPDIR": str(root / "launcher"),
           "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)
    transcript = []

    def ray(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(ray_cli), *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        transcript.append(f"$ ray {' '.join(args)}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
        assert proc.returncode == 0, transcript[-1]
        return proc

    try:
        (root / "launcher").mkdir()
        head.start()
        assert head.interfaces().split()[0] == "lo" and len(head.interfaces().splitlines()) == 1
        cfg_path = root / "onprem.yaml"
        cfg_path.write_text(yaml.safe_dump(onprem_test_config(head, f"hwclf-test-{root.name[5:]}")))
        cfg = str(cfg_path)
        storage = root / "results"

        ray("up", "-y", cfg)
        probe = ray("exec", cfg, 'python -c "import hwclf, sweep; print(hwclf.__file__); print(sweep.__file__)"')
        venv = head.home / "hwclf-venv"
        located = [line for line in probe.stdout.splitlines() if line.strip().endswith("__init__.py")]
        assert len(located) == 2 and all(line.strip().startswith(str(venv)) for line in located), probe.stdout

        budget = ["--epochs", "1", "--archs", "basic", "--blur", "0", "--seeds", "0"]
        sweep = ["submit", cfg, "sweep/run.py", "--", "--preset", "demo", "--storage", str(storage), *budget]
        submitted = ray(*sweep)
        exp = storage / "demo"
        record = json.loads((exp / "hwclf-sweep.json").read_text())
        assert (record["trials_complete"], record["trials_failed"]) == (1, 0), submitted.stdout[-3000:]
        assert (exp / "report" / "report.html").is_file()
        assert f"report: {exp / 'report'}" in submitted.stdout

        resumed = ray(*sweep, "--resume")
        assert "1/1 trials complete, 0 failed" in resumed.stdout
        assert json.loads((exp / "hwclf-sweep.json").read_text())["resumed_at"]

        (root / "here").mkdir()
        ray("rsync-down", cfg, f"{exp}/", f"{root / 'here' / 'demo'}/")
        report = subprocess.run([sys.executable, "-m", "hwclf", "report", str(root / "here" / "demo")], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=600)
        assert report.returncode == 0, report.stderr[-3000:]
        assert (root / "here" / "demo" / "report" / "report.html").is_file()

        assert any(process_name(p) in RAY_CORE for p in head.pids())
        ray("down", "-y", cfg)
        deadline = time.time() + 60
        while time.time() < deadline and any(process_name(p) in RAY_CORE for p in head.pids()):
            time.sleep(1)
        assert not [process_name(p) for p in head.pids() if process_name(p) in RAY_CORE], "ray down left Ray running"
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
    gone = [pid for pid, started in others.items() if start_time(pid) != started]
    assert not gone, f"Ray processes that were running before the test are gone: {gone}"
