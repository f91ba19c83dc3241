"""A private Postfix instance for the benchmarks: smtpd into the hold queue, and ETRN.

Mail for ``bench.test`` is accepted, written and fsynced by Postfix's
cleanup and parked in the hold queue (``check_client_access static:HOLD``),
so the queue manager never tries to deliver it and no queue file is deleted
while a measure runs. ``fast_flush_domains = bench.test`` with Postfix's
default ``parent_domain_matches_subdomains`` makes every ``dN.bench.test``
eligible for ETRN. Both transports are ``discard:``, so nothing this
instance does can leave the machine. Config, queue and data live under
their own directory and the instance has its own master process.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.procs import LOOPBACK, BenchError, free_port

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "bench.test"
COMMAND_TIMEOUT = 60.0

# chroot is off ("n") because the private queue directory lacks /etc copies.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available() -> str | None:
    """Return None when a private Postfix can run here, else the reason it cannot."""
    if shutil.which(POSTFIX) is None:
        return f"{POSTFIX} not found; run .ci/install-peers as root"
    import os

    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    return None


def _run(argv: list[str]) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if completed.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {completed.returncode}: {completed.stdout}{completed.stderr}")


class BenchPostfix:
    """One private Postfix instance under ``root``, listening on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.config_dir = root / "etc"
        self.queue_dir = root / "spool"
        self.data_dir = root / "data"
        self.log_file = root / "maillog"
        self._started = False

    def start(self) -> None:
        """Write the config, set queue permissions and start master; wait for the port."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        self._write_config()
        _run([POSTFIX, "-c", str(self.config_dir), "set-permissions"])
        _run([POSTFIX, "-c", str(self.config_dir), "start"])
        self._started = True
        self._wait_for_port()

    def stop(self) -> None:
        """Stop master with ``postfix stop`` and wait until the master process has exited."""
        if not self._started:
            return
        pid_text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
        subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"], capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        # Postfix leaves master.pid behind, so wait for the process itself to go.
        deadline = time.monotonic() + 20
        while pid_text.isdigit() and Path(f"/proc/{pid_text}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._started = False

    def held_count(self) -> int:
        """Count the queue files in the hold queue."""
        hold = self.queue_dir / "hold"
        return sum(1 for path in hold.rglob("*") if path.is_file()) if hold.exists() else 0

    def held_bytes(self) -> int:
        """Sum the sizes of the hold queue's files."""
        hold = self.queue_dir / "hold"
        return sum(path.stat().st_size for path in hold.rglob("*") if path.is_file()) if hold.exists() else 0

    def _wait_for_port(self, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"Postfix did not accept connections on {LOOPBACK}:{self.port} within {timeout:.0f}s")

    def _write_config(self) -> None:
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
inet_interfaces = {LOOPBACK}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {DOMAIN}
fast_flush_domains = {DOMAIN}
smtpd_etrn_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_data_restrictions = check_client_access static:HOLD
smtpd_peername_lookup = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
message_size_limit = 0
mailbox_size_limit = 0
default_transport = discard:bench
relay_transport = discard:bench
biff = no
alias_maps =
alias_database =
maillog_file_prefixes = {self.root}
maillog_file = {self.log_file}
"""
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"{LOOPBACK}:{self.port}"))
