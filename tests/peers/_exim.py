"""Shared parts of the private Exim daemons: files, trusted configs, daemon process.

An instance lives in a temporary directory with its own configuration,
spool, log and pid file. Exim keeps root privilege with ``-C`` only for
configuration files listed in its compile-time TRUSTED_CONFIG_LIST
(``/etc/exim4/trusted_configs`` in Debian's builds). Root is needed to
bind, to switch to Debian-exim and, for ETRN, to re-execute itself, so each
instance adds its config path to that list while it runs and removes it on
stop. An instance may run inside a chroot (the sid Exim). Then every path
in the config is the path as seen inside the chroot.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

from ._process import (
    PeerFailed,
    PeerNotInstalled,
    make_shared_tempdir,
    require_root,
    run,
    stop_pid,
    stop_popen,
    wait_for_port,
)

# Where .ci/install-peers puts the unpacked Exim 4.96 and the sid chroot.
PEERS_ROOT = Path(os.environ.get("MAILRELEASED_PEERS_ROOT", "/opt/mailreleased-peers"))
EXIM_USER = "Debian-exim"


class EximDaemon:
    """One private Exim daemon started with ``-bdf`` (foreground) and its own files.

    ``chroot`` is the root of a chroot that contains the Exim binary, or None
    for a binary on the host. ``exim_path`` is the binary's path inside it.
    """

    name = "exim"

    def __init__(self, *, exim_path: str, chroot: Path | None = None, install_hint: str) -> None:
        require_root()
        self.chroot = chroot
        self.exim_path = exim_path
        if not self.host_path(exim_path).is_file():
            raise PeerNotInstalled(f"{self.host_path(exim_path)} not found; {install_hint}")
        parent = str(chroot / "tmp") if chroot is not None else None
        self.root = make_shared_tempdir(f"mailreleased-{self.name}-", parent=parent)
        self.config_file = self.root / "exim.conf"
        self.spool_dir = self.root / "spool"
        self.log_dir = self.root / "log"
        self._process: subprocess.Popen[bytes] | None = None
        self._trusted = False

    # -- paths -------------------------------------------------------------

    def host_path(self, inner: str | Path) -> Path:
        """Map a path inside the daemon's root to the same file on the host."""
        if self.chroot is None:
            return Path(inner)
        return self.chroot / str(inner).lstrip("/")

    def inner_path(self, host: Path) -> str:
        """Map a host path below the chroot to the path inside the daemon's root."""
        if self.chroot is None:
            return str(host)
        return "/" + str(host.relative_to(self.chroot))

    @property
    def trusted_list(self) -> Path:
        return self.host_path("/etc/exim4/trusted_configs")

    def exim_argv(self, *args: str) -> list[str]:
        """Build the command line that runs this instance's Exim with its config."""
        prefix = ["chroot", str(self.chroot)] if self.chroot is not None else []
        return [*prefix, self.exim_path, "-C", self.inner_path(self.config_file), *args]

    def chown_to_exim(self, path: Path) -> None:
        """Give ``path`` to Debian-exim by name, as the daemon's own system resolves it.

        The uid of Debian-exim differs between the host and the chroot, so
        in a chroot the chown runs inside it.
        """
        if self.chroot is None:
            shutil.chown(path, EXIM_USER, EXIM_USER)
        else:
            run(["chroot", str(self.chroot), "chown", f"{EXIM_USER}:{EXIM_USER}", self.inner_path(path)])

    # -- lifecycle ---------------------------------------------------------

    def write_config(self) -> str:
        """Return the configuration text; subclasses fill it in."""
        raise NotImplementedError

    def listen_ports(self) -> list[int]:
        """Return the ports the daemon listens on; subclasses fill it in."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create extra files before the daemon starts; subclasses may extend it."""

    def start(self) -> None:
        """Write the files, trust the config, start the daemon and wait for its ports."""
        self.spool_dir.mkdir()
        self.log_dir.mkdir()
        self.chown_to_exim(self.spool_dir)
        self.chown_to_exim(self.log_dir)
        self.prepare()
        self.config_file.write_text(self.write_config())
        self.config_file.chmod(0o644)
        self._trust_config()

        # Exim checks the file before it starts listening.
        run(self.exim_argv("-bV"))
        self._process = subprocess.Popen(
            self.exim_argv("-bdf"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in self.listen_ports():
                wait_for_port(port)
        except PeerFailed as exc:
            self.stop()
            raise PeerFailed(f"{exc}\nExim log:\n{self.log_tail()}") from None

    def stop(self) -> None:
        """Stop the daemon and its children by PID, untrust the config and remove the files."""
        if self._process is not None:
            stop_popen(self._process)
            self._process = None
        # Session and delivery processes outlive the daemon (an ATRN queue
        # run keeps going after a dropped connection) and would recreate
        # the log directory after rmtree, so stop them first.
        for pid in self._instance_pids():
            stop_pid(pid)
        self._untrust_config()
        shutil.rmtree(self.root, ignore_errors=True)

    def _instance_pids(self) -> list[int]:
        """Return the PIDs of Exim processes running with this instance's config.

        Every Exim process of the instance, forked or re-executed, has
        ``-C <config>`` on its command line, and the config path is unique.
        """
        config = self.inner_path(self.config_file).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if config in arguments:
                pids.append(int(entry.name))
        return pids

    def _edit_trusted_list(self, add: bool) -> None:
        path = self.trusted_list
        line = self.inner_path(self.config_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            lines = [existing for existing in handle.read().splitlines() if existing and existing != line]
            if add:
                lines.append(line)
            handle.seek(0)
            handle.truncate()
            handle.write("".join(f"{entry}\n" for entry in lines))
        # Exim ignores the list unless root owns it and only root can write it.
        path.chmod(0o644)

    def _trust_config(self) -> None:
        self._edit_trusted_list(add=True)
        self._trusted = True

    def _untrust_config(self) -> None:
        if self._trusted:
            self._edit_trusted_list(add=False)
            self._trusted = False

    # -- queue and logs ----------------------------------------------------

    def queue_count(self) -> int:
        """Return the number of messages in the queue (``exim -bpc``)."""
        return int(run(self.exim_argv("-bpc")).stdout.strip() or "0")

    def wait_queue_count(self, count: int, timeout: float = 15.0) -> None:
        """Wait until the queue contains exactly ``count`` messages; raise PeerFailed after ``timeout``."""
        deadline = time.monotonic() + timeout
        current = self.queue_count()
        while current != count and time.monotonic() < deadline:
            time.sleep(0.1)
            current = self.queue_count()
        if current != count:
            raise PeerFailed(f"expected {count} queued messages, found {current}; Exim log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the main and panic logs."""
        parts = []
        for name in ("mainlog", "paniclog", "rejectlog"):
            path = self.log_dir / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no Exim log yet)"
