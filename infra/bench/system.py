"""The machine side of a benchmark: the pipeline's subprocesses, their peak memory and CPU, and
what the machine and its software are.

Everything is read from ``/proc`` (``psutil`` is not a dependency): ``VmHWM`` is the kernel's
own high-water mark of a process's resident set, so sampling it now and then and keeping the
last value read before the process exits gives its true peak, not a sampled one.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

MAPPA = str(Path(sys.executable).with_name("mappa"))
_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessDied(RuntimeError):
    pass


def read_peak_rss_kib(pid: int) -> int | None:
    """The process's resident high-water mark (``VmHWM``) in KiB, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """The process's children, their children, and so on (from /proc)."""
    found: list[int] = []
    waiting = [pid]
    while waiting:
        parent = waiting.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children", encoding="ascii") as children:
                kids = [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
        found.extend(kids)
        waiting.extend(kids)
    return found


def read_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, over all cores."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _TICKS, total / _TICKS


def _servers() -> dict[str, list[int]]:
    """The pids of the PostgreSQL server's processes and of the Kafka broker."""
    found: dict[str, list[int]] = {"postgres": [], "kafka": []}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", encoding="ascii", errors="replace") as comm:
                name = comm.read().strip()
            if name == "postgres":
                found["postgres"].append(int(entry.name))
            elif name == "java":
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if b"kafka.Kafka" in cmdline.read():
                        found["kafka"].append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


@dataclass
class CpuSnapshot:
    """CPU seconds used so far, by (label, pid): a label's processes, ``postgres``, ``kafka``
    and ``bench`` (this process); and the whole machine's busy and total CPU seconds."""

    at: float
    seconds: dict[tuple[str, int], float]
    system_busy: float
    system_total: float


@dataclass
class Processes:
    """The tracker's processes started by the bench, each under a label, with its log file;
    a background thread keeps each label's peak resident memory (a label started twice keeps
    the higher peak of the two)."""

    env: Mapping[str, str]
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    peaks_kib: dict[str, int] = field(default_factory=dict)
    # The last CPU time read of each process (label, pid), kept after it exits so that a
    # phase's CPU still counts a process that ended inside it.
    cpu_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    # Where each label's log stood when it was last started: a label's log is appended to
    # by every start, and only what this start wrote says anything about it.
    log_starts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)
        self._thread.start()

    def start(self, label: str, argv: Sequence[str], stdout: int | None = None) -> None:
        """Start ``argv`` (stderr to ``<label>.log``; stdout too unless ``stdout`` is given)."""
        log = self.log_path(label).open("ab")
        self.log_starts[label] = log.tell()
        process = subprocess.Popen(
            list(argv),
            env=dict(self.env),
            stdout=stdout if stdout is not None else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        with self._lock:
            self.running[label] = process

    def start_mappa(self, label: str, *args: str, profile: Path | None = None) -> None:
        """``mappa ARGS`` as a subprocess; with ``profile``, under cProfile (stats written
        there when the process exits cleanly on SIGTERM)."""
        if profile is None:
            self.start(label, [MAPPA, *args])
            return
        code = (
            "import cProfile, sys\n"
            "from infra.cli import main\n"
            f"sys.argv = ['mappa', *{list(args)!r}]\n"
            "profiler = cProfile.Profile()\n"
            "status = profiler.runcall(main)\n"
            f"profiler.dump_stats({str(profile)!r})\n"
            "raise SystemExit(status)\n"
        )
        self.start(label, [sys.executable, "-c", code])

    def log_path(self, label: str) -> Path:
        return self.logs / f"{label.replace(' ', '-')}.log"

    def log_tail(self, label: str, chars: int = 3000) -> str:
        path = self.log_path(label)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def pid(self, label: str) -> int:
        return self.running[label].pid

    def check_alive(self, *labels: str) -> None:
        for label in labels or list(self.running):
            process = self.running.get(label)
            if process is not None and process.poll() is not None:
                raise ProcessDied(
                    f"{label} exited with status {process.returncode}:\n{self.log_tail(label)}"
                )

    def wait_for_log(self, label: str, text: str, timeout: float) -> None:
        """Wait until the process has logged ``text`` (e.g. "partitions assigned") since it
        was last started."""
        deadline = time.monotonic() + timeout
        start = self.log_starts.get(label, 0)
        while time.monotonic() < deadline:
            self.check_alive(label)
            path = self.log_path(label)
            if path.exists() and text.encode() in path.read_bytes()[start:]:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{label} did not log {text!r} within {timeout:.0f}s")

    def stop(self, label: str, timeout: float = 120) -> int:
        """SIGTERM (the processes finish their batch and exit cleanly); returns the status."""
        with self._lock:
            process = self.running[label]
        self._record(label, process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with self._lock:
            del self.running[label]
        return int(process.returncode)

    def wait(self, label: str, timeout: float) -> int:
        """Wait for a process that ends by itself; returns its status."""
        with self._lock:
            process = self.running[label]
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            self._record(label, process.pid)
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{label} still running after {timeout:.0f}s")
            time.sleep(0.1)
        with self._lock:
            del self.running[label]
        return int(process.returncode)

    def stop_all(self) -> None:
        for label in list(self.running):
            self.stop(label)

    def close(self) -> None:
        self.stop_all()
        self._stop.set()

    def peak_mib(self, label: str) -> float | None:
        kib = self.peaks_kib.get(label)
        return None if kib is None else kib / 1024

    def note_peak_kib(self, label: str, kib: int) -> None:
        """A peak the process reported itself (e.g. of workers it started and waited for)."""
        with self._lock:
            self.peaks_kib[label] = max(self.peaks_kib.get(label, 0), kib)

    def _record(self, label: str, pid: int) -> None:
        """Peak memory and CPU of the process and of its children (a rebuild's workers),
        all under its label; the peak is the largest single process's."""
        for each in (pid, *descendants(pid)):
            kib = read_peak_rss_kib(each)
            cpu = read_cpu_seconds(each)
            with self._lock:
                if kib is not None:
                    self.peaks_kib[label] = max(self.peaks_kib.get(label, 0), kib)
                if cpu is not None:
                    self.cpu_seconds[(label, each)] = cpu

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                live = [(label, p.pid) for label, p in self.running.items() if p.poll() is None]
            for label, pid in live:
                self._record(label, pid)

    # --- CPU ------------------------------------------------------------------------

    def cpu_snapshot(self) -> CpuSnapshot:
        """CPU seconds used so far by every process the bench started (running or not),
        PostgreSQL, the broker and this process, and by the whole machine."""
        with self._lock:
            live = [(label, p.pid) for label, p in self.running.items()]
        for label, pid in live:
            self._record(label, pid)
        with self._lock:
            seconds = dict(self.cpu_seconds)
        for server, pids in _servers().items():
            for pid in pids:
                seconds[(server, pid)] = read_cpu_seconds(pid) or 0.0
        seconds[("bench", os.getpid())] = read_cpu_seconds(os.getpid()) or 0.0
        busy, total = _system_cpu()
        return CpuSnapshot(time.monotonic(), seconds, busy, total)


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Cores used by each label between two snapshots (1.0 = one core all the time; labels
    that used none are left out), ``others``: cores used by processes none of these account
    for (other work on the machine), and ``machine``: the share of all cores that was busy."""
    wall = max(after.at - before.at, 1e-9)
    used: dict[str, float] = {}
    for (label, pid), seconds in after.seconds.items():
        delta = seconds - before.seconds.get((label, pid), 0.0)
        used[label] = used.get(label, 0.0) + max(delta, 0.0)
    total = after.system_total - before.system_total
    busy = after.system_busy - before.system_busy
    usage = {
        label: round(seconds / wall, 2)
        for label, seconds in used.items()
        if seconds / wall >= 0.005 or label in ("postgres", "kafka")
    }
    usage["others"] = round(max(busy - sum(used.values()), 0.0) / wall, 2)
    usage["machine"] = round(busy / total, 2) if total else 0.0
    return usage


# --- the machine and its software ---------------------------------------------------------


def machine() -> dict[str, str | int | float]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except FileNotFoundError:
        pass
    memory_gib = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory_gib = round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)
    except (FileNotFoundError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "os": _os_name(),
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except FileNotFoundError:
        pass
    return platform.system()


def versions(postgres_version: str, kafka_version: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("eventsourcing", "kafka-python", "psycopg", "pydantic"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    # Without the C extension, kafka-python checks and writes every record batch's CRC32C
    # in pure Python (a few MB/s): it bounds every Kafka client figure, anchors included.
    try:
        found["crc32c"] = metadata.version("crc32c")
    except metadata.PackageNotFoundError:
        found["crc32c"] = "not installed (kafka-python's CRC32C in pure Python)"
    found["postgresql"] = postgres_version
    found["kafka"] = kafka_version
    return found


def kafka_broker_version() -> str:
    """The Kafka release of the running broker, from the jar on its classpath."""
    for pid in _servers()["kafka"]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except (FileNotFoundError, PermissionError):
            continue
        for index, arg in enumerate(args):
            if arg in (b"-cp", b"-classpath") and index + 1 < len(args):
                for entry in args[index + 1].decode(errors="replace").split(":"):
                    folder = Path(entry.rstrip("*")).expanduser()
                    for jar in sorted(folder.glob("kafka_2.13-*.jar")):
                        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return "unknown"
