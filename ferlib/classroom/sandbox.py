"""Sandboxed grading: each submission's kernel runs in its own bubblewrap sandbox (Linux).

A submission is code the grader must not trust. Only its *kernel* runs in the sandbox; the
grader keeps the assembled notebook (the instructor's test cells, hidden tests included) in
its own memory and sends the cells one by one, so the hidden tests enter the sandbox only as
executed cells and no file of the instructor's is ever visible. In the sandbox
(:func:`kernel_manager` builds the command):

* **files**: the system (``/usr``, ``/etc``, ...), this Python and the course's code
  (``ferlib/``, ``results/``, ``pyproject.toml``) are read-only; the course's data folder is
  read-only too, with a throw-away layer where new files may be made (a stand-in data set, a
  cache). Nothing else of the machine is there: not the instructor notebooks, not the
  course's ``notebooks/``, ``.git/`` or ``build/``, not the other submissions, not the
  teacher's home. Writable: the submission's own temporary folder (working folder
  ``notebooks/``, a fresh home, the kernel's sockets) and a private ``/tmp``, all thrown
  away after the submission.
* **processes**: a new PID namespace, so the kernel sees no process of the grader (nor its
  command line) and every process it starts, detached or not, is killed with it; the
  sandbox dies with the grader (``--die-with-parent``).
* **network**: none (a network namespace with only its own loopback). The grader talks to
  the kernel through Unix sockets in the submission's folder (ZeroMQ's ``ipc`` transport).
* **limits** (:class:`Limits`): address space, processes, CPU time and file size, set by
  a small launcher (this file run as a script) before it starts the kernel. When the
  grader runs as root, the kernel runs as ``nobody`` (a process limit does not apply to
  root) without any capability.
* **environment**: only the variables a Python kernel needs (``PATH``, locale, ``PYTHON*``,
  ``FERLIB_*``, thread counts, ...); the grader's other variables (tokens) stay out.

Where bubblewrap is missing or cannot make a sandbox (macOS, Windows, a container without
user namespaces), :func:`sandbox_mode` says so in one line and grading runs as before.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # jupyter_client is imported where used: dev extra
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

#: The command that installs bubblewrap on Debian and Ubuntu.
INSTALL = "sudo apt-get install bubblewrap"
NOBODY = 65534  # the kernel's user and group when the grader runs as root

#: The environment variables a sandboxed kernel gets: these names, and those that start with
#: one of :data:`ENV_PREFIXES`. The grader's others (a token, a password) stay out.
ENV_NAMES = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "VIRTUAL_ENV", "MPLBACKEND")
ENV_PREFIXES = ("LC_", "PYTHON", "CONDA_", "FERLIB_", "OMP_", "MKL_", "OPENBLAS_", "TORCH_")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Limits:
    """What one submission's sandbox may use; each process of it, for memory and CPU."""

    memory_gb: float = 0.0  # address space per process; 0: half the machine's memory, >= 8
    processes: int = 1024  # processes and threads of the sandbox together
    cpu_seconds: int = 4 * 3600  # CPU time per process
    file_gb: float = 4.0  # the largest file it may write
    tmp_gb: float = 2.0  # its private /tmp (in memory)

    def address_space(self) -> int:
        """The address-space limit in bytes."""
        if self.memory_gb > 0:
            return int(self.memory_gb * 2**30)
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = 16 * 2**30
        return max(8 * 2**30, total // 2)


# ----------------------------------------------------------------------------- availability


def _bwrap() -> str | None:
    return shutil.which("bwrap") if sys.platform.startswith("linux") else None


def _isolation(root: bool) -> list[str]:
    """Namespaces, session and user: the same for the probe and for a kernel."""
    args = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net"]
    args += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if root:  # no user namespace: the launcher drops to nobody, which needs these two
        return [*args, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*args, "--unshare-user", "--disable-userns"]


@functools.lru_cache(maxsize=1)
def _version() -> str:
    done = subprocess.run([_bwrap() or "bwrap", "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "bubblewrap"


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str:
    """Why no sandbox can be made here ('' when one can): not Linux, bubblewrap missing,
    older than 0.8 (Debian 12, Ubuntu 24.04 have it) or refused by the system."""
    if not sys.platform.startswith("linux"):
        return f"no sandbox on {sys.platform} (bubblewrap needs Linux)"
    bwrap = _bwrap()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed; install it with `{INSTALL}`"
    probe = [bwrap, *_isolation(os.geteuid() == 0), "--ro-bind", "/", "/", "--proc", "/proc"]
    probe += ["--perms", "1777", "--size", "1048576", "--tmpfs", "/tmp"]
    probe += ["--perms", "0755", "--dir", "/tmp/probe"]  # what a kernel's sandbox uses
    try:
        done = subprocess.run([*probe, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap cannot run: {err}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return f"{_version()} cannot make a sandbox here (need >= 0.8): {why}"
    return ""


def sandbox_mode(requested: bool | None = None) -> tuple[bool, str]:
    """Whether to grade in a sandbox, and the one line that says so.

    ``requested``: ``None`` (the default) uses a sandbox where one can be made and grades as
    before elsewhere; ``False`` never uses one; ``True`` requires one (``RuntimeError`` when
    none can be made).
    """
    if requested is False:
        return False, "grading WITHOUT a sandbox (--no-sandbox): submissions run as you"
    problem = sandbox_problem()
    if problem and requested:
        raise RuntimeError(f"a sandbox was required but {problem}")
    if problem:
        return False, f"grading WITHOUT a sandbox: {problem}"
    return True, (
        f"grading in a sandbox ({_version()}): each submission alone, no network, course "
        "read-only, its processes ended with it"
    )


# ----------------------------------------------------------------------------- the sandbox


def this_python_kernelspecs(
    prefix: Sequence[str] = (), interrupt_mode: str = "signal"
) -> KernelSpecManager:
    """A kernel-spec manager whose ``python3`` is this very Python (like nbval's
    ``--nbval-current-env``), its command started by ``prefix`` (a sandbox) when given."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            spec = ipykernel.kernelspec.get_kernel_dict()
            spec["argv"] = [*prefix, *spec["argv"]]
            spec["interrupt_mode"] = interrupt_mode
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)

    return ThisPython()


def _under(path: Path, parents: Iterable[Path]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def _bind(how: str, source: Path, made: set[Path]) -> list[str]:
    """``how source source``, after the folders above it (readable by all: bubblewrap
    would make them for root only)."""
    args = []
    for parent in reversed(source.parents[:-1]):
        if parent not in made:
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
    return [*args, how, str(source), str(source)]


def _python_dirs() -> list[Path]:
    """This Python's installation and environment, and the folders of ``PYTHONPATH``."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    dirs += [str(Path(os.path.realpath(sys.executable)).parents[1])]
    dirs += [d for d in os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(d)]
    return [Path(d) for d in dict.fromkeys(os.path.realpath(d) for d in dirs)]


def kernel_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """The variables of ``env`` a kernel needs (:data:`ENV_NAMES`, :data:`ENV_PREFIXES`),
    with its own home and ``/tmp``; without ``FERLIB_RUNS`` (runs go to its ``../runs``)."""
    keep = {k: v for k, v in env.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    keep.pop("FERLIB_RUNS", None)
    return {**keep, "HOME": str(home), "TMPDIR": "/tmp", "USER": "student"}


def bwrap_args(
    box: Path, course: Path, data: Path | None, limits: Limits, hide: Sequence[Path] = ()
) -> list[str]:
    """The bubblewrap command line (without the command) for one submission's folder ``box``.

    ``course`` is the repository (its ``ferlib/``, ``results/`` and ``pyproject.toml`` are
    shown read-only), ``data`` the data folder (read-only, with a throw-away layer in
    ``box/.data`` for new files) or ``None``. A folder of ``hide`` (the instructor
    notebooks', the submissions') that lies in a folder shown is covered by an empty one.
    """
    root = os.geteuid() == 0
    args = [_bwrap() or "bwrap", *_isolation(root)]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    size = str(int(limits.tmp_gb * 2**30))
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    shown: list[Path] = [Path(d) for d in SYSTEM_DIRS]
    made = {Path("/tmp")}
    course_parts = [course / "ferlib", course / "results", course / "pyproject.toml"]
    for path in [*_python_dirs(), *course_parts]:
        if path.exists() and not _under(path, shown):
            args += _bind("--ro-bind", path, made)
            shown.append(path)
    if data is not None and data.is_dir():
        layer = box / ".data"
        layer.mkdir()
        args += [*_bind("--bind", data, made)[:-2], str(layer), str(data)]
        for entry in sorted(data.iterdir()):
            args += ["--ro-bind", str(entry), str(entry)]
        shown.append(data)
    for folder in hide:
        folder = folder.resolve()
        if folder.is_dir() and _under(folder, shown) and not _under(box, [folder]):
            if not any(p != folder and _under(p, [folder]) for p in shown):  # holds none
                args += ["--tmpfs", str(folder)]
    args += [*_bind("--bind", box, made), "--chdir", str(box / "notebooks")]
    args += ["--setenv", "JPY_PARENT_PID", "1"]  # its parent is the sandbox's init: no poll
    launcher = [sys.executable, "-I", "-S", str(Path(__file__).resolve())]
    launcher += [f"--as={limits.address_space()}", f"--nproc={limits.processes}"]
    launcher += [f"--cpu={limits.cpu_seconds}", f"--fsize={int(limits.file_gb * 2**30)}"]
    if root:
        launcher += [f"--uid={NOBODY}", f"--gid={NOBODY}"]
    return [*args, "--", *launcher, "--"]


def _font_cache(home: Path) -> None:
    """Copy matplotlib's font list from our cache into the kernel's fresh home (it saves
    a notebook that plots the time to list the fonts again)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    ours = Path(os.environ.get("MPLCONFIGDIR") or Path(xdg) / "matplotlib")
    for font_list in ours.glob("fontlist-*.json"):
        (home / ".cache" / "matplotlib").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(font_list, home / ".cache" / "matplotlib" / font_list.name)


def _give(path: Path) -> None:
    """Hand ``path`` (and what it holds) to the kernel's user when we are root."""
    if os.geteuid() != 0:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)


def kernel_manager(
    box: Path,
    course: Path,
    data: Path | None,
    limits: Limits | None = None,
    hide: Sequence[Path] = (),
) -> AsyncKernelManager:
    """An asynchronous kernel manager whose kernel (this Python's ipykernel) starts in a
    sandbox (:func:`bwrap_args`) for the submission folder ``box`` (which holds
    ``notebooks/``, the working folder). The kernel's home is ``box/home``; its connection
    file and sockets lie in ``box/kernel``; it is interrupted by message (a signal would
    reach bubblewrap)."""
    from jupyter_client import AsyncKernelManager

    limits = limits or Limits()
    for name in ("home", "kernel"):
        (box / name).mkdir(exist_ok=True)
    _font_cache(box / "home")
    command = bwrap_args(box, course, data, limits, hide)
    km = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=this_python_kernelspecs(command, interrupt_mode="message"),
        transport="ipc",
        ip=str(box / "kernel" / "zmq"),
        connection_file=str(box / "kernel" / "connection.json"),
    )
    km.write_connection_file()  # now, so that the kernel's user may read it
    _give(box)
    return km


# ----------------------------------------------------------------------------- the launcher


def _launch(argv: list[str]) -> None:
    """In the sandbox: set the limits, drop root if asked, then exec the command."""
    import resource

    split = argv.index("--")
    options = dict(a.lstrip("-").split("=", 1) for a in argv[:split])
    command = argv[split + 1 :]
    for name, key in (("as", "AS"), ("nproc", "NPROC"), ("cpu", "CPU"), ("fsize", "FSIZE")):
        if name in options:
            value = int(options[name])
            hard = value + 5 if key == "CPU" else value  # SIGXCPU first, SIGKILL 5 s later
            resource.setrlimit(getattr(resource, f"RLIMIT_{key}"), (value, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if "uid" in options:
        os.setgroups([])
        os.setgid(int(options["gid"]))
        os.setuid(int(options["uid"]))
    os.execv(command[0], command)


if __name__ == "__main__":
    _launch(sys.argv[1:])
