"""A private Postfix instance acting as a backup MX that holds mail for hold.test.

The instance has its own config, queue and data directories under a
temporary directory and its own master process, so it never touches the
system Postfix. Mail for the relay domain goes through a transport to
``[127.0.0.1]:<receiver_port>``. Nothing listens there until the test
starts a receiver, so the first delivery attempt fails with "connection
refused" and the mail waits in the deferred queue. The long backoff keeps
it there until an ETRN triggers the fast flush service.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ._process import (
    LOOPBACK,
    PeerFailed,
    free_port,
    make_shared_tempdir,
    read_pid_file,
    require_program,
    require_root,
    run,
    stop_pid,
    wait_for_exit,
    wait_for_port,
)
from .messages import make_message, send_messages

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
HOLD_DOMAIN = "hold.test"

# Services this instance needs. chroot is off ("n") because the private
# queue directory has no copies of /etc/services, resolv.conf and friends.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixBackupMx:
    """One private Postfix instance on a free loopback port.

    ``port`` is its SMTP listener. ``receiver_port`` is where held mail
    for ``hold.test`` goes once it is released.
    """

    def __init__(self, *, helo_required: bool = False, relay_domains: tuple[str, ...] = (HOLD_DOMAIN,)) -> None:
        require_root()
        require_program(POSTFIX)
        require_program(POSTQUEUE)
        self.helo_required = helo_required
        self.relay_domains = relay_domains
        self.port = free_port()
        self.receiver_port = free_port()
        self.root = make_shared_tempdir("mailreleased-postfix-")
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "maillog"
        self._master_pid: int | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Write the configuration, fix queue permissions and start master."""
        self.config_dir.mkdir()
        self.queue_dir.mkdir()
        self.data_dir.mkdir()
        shutil.chown(self.data_dir, "postfix", "postfix")
        self._write_config()

        # set-permissions creates the queue subdirectories with the owners
        # and modes that postfix-files lists: owner postfix, and the setgid
        # group postdrop on maildrop and public.
        run([POSTFIX, "-c", str(self.config_dir), "set-permissions"])
        run([POSTFIX, "-c", str(self.config_dir), "check"])
        run([POSTFIX, "-c", str(self.config_dir), "start"])
        self._master_pid = read_pid_file(self.queue_dir / "pid" / "master.pid")
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop master with ``postfix stop``, kill it by PID if it lingers, remove the files."""
        if self._master_pid is not None:
            run([POSTFIX, "-c", str(self.config_dir), "stop"], check=False, timeout=30)
            if not wait_for_exit(self._master_pid, 10.0):
                stop_pid(self._master_pid)
            self._master_pid = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _write_config(self) -> None:
        transport = "".join(f"{domain} smtp:[{LOOPBACK}]:{self.receiver_port}\n" for domain in self.relay_domains)
        (self.config_dir / "transport").write_text(transport)
        domains = " ".join(self.relay_domains)
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = backup-mx.test
mydomain = backup-mx.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
inet_interfaces = {LOOPBACK}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domains}
fast_flush_domains = $relay_domains
transport_maps = texthash:{self.config_dir / "transport"}
smtpd_etrn_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_helo_required = {"yes" if self.helo_required else "no"}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_connect_timeout = 5s
minimal_backoff_time = 1h
maximal_backoff_time = 2h
queue_run_delay = 1h
biff = no
alias_maps =
alias_database =
maillog_file_prefixes = {self.root}
maillog_file = {self.log_file}
"""
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"{LOOPBACK}:{self.port}"))

    # -- queue -------------------------------------------------------------

    def queue_messages(self, count: int, domain: str = HOLD_DOMAIN) -> list[bytes]:
        """Submit ``count`` messages for ``user@domain`` and wait until all are deferred.

        Returns the submitted message bytes in order.
        """
        messages = [make_message(index, f"user{index}@{domain}") for index in range(count)]
        send_messages(self.port, [(f"user{index}@{domain}", message) for index, message in enumerate(messages)])
        self.wait_deferred(count)
        return messages

    def deferred_count(self) -> int:
        """Count queue files in the deferred queue."""
        deferred = self.queue_dir / "deferred"
        if not deferred.exists():
            return 0
        return sum(1 for path in deferred.rglob("*") if path.is_file())

    def wait_deferred(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` messages sit in the deferred queue.

        Raises PeerFailed with the mail log tail after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.deferred_count() >= count:
                return
            time.sleep(0.1)
        raise PeerFailed(
            f"expected {count} deferred messages within {timeout:.0f}s, found {self.deferred_count()}; "
            f"mail log:\n{self.log_tail()}"
        )

    def queue_count(self) -> int:
        """Count the messages that ``postqueue -p`` lists (every queue but maildrop)."""
        listing = run([POSTQUEUE, "-c", str(self.config_dir), "-p"]).stdout
        if "Mail queue is empty" in listing:
            return 0
        # Each queued message starts with its queue id in column one.
        return sum(
            1
            for line in listing.splitlines()
            if line and not line[0].isspace() and not line.startswith(("-", "(")) and line[0].isalnum()
        )

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the instance's mail log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no mail log yet)"
        return "\n".join(text.splitlines()[-lines:])
