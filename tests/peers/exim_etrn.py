"""Exim 4.96 (Debian 12, unpacked by .ci/install-peers) as an ETRN server holding hold.test.

Mail for hold.test is accepted and queued but not delivered, because
``queue_domains`` keeps it out of immediate delivery and no queue runner
is started. ``smtp_etrn_command`` is left unset, so Exim's built-in ETRN
handling applies:

- ``ETRN #hold.test`` runs ``exim -R hold.test``, a queue run for that
  domain. Exim re-executes itself with the same ``-C`` config, which is
  why the config must be in the trusted list. The reply is
  ``250 OK``.
- ``ETRN hold.test`` (no ``#``) is rejected with
  ``501 argument must begin with #``.

A configured ``smtp_etrn_command`` of ``exim -C <config> -R $domain``
fails in 4.96 with ``458 Internal failure`` (the panic log reads "Tainted
arg 4 for ETRN processing command"), because ``$domain`` comes from the
client. The built-in handling avoids that and keeps the ``-C`` config.
The queue run sends the mail to ``[127.0.0.1]:<receiver_port>``.
"""

from __future__ import annotations

from ._exim import PEERS_ROOT, EximDaemon
from ._process import LOOPBACK, free_port
from .messages import make_message, send_messages

EXIM496_PATH = str(PEERS_ROOT / "exim496" / "usr" / "sbin" / "exim4")
HOLD_DOMAIN = "hold.test"


class Exim496EtrnServer(EximDaemon):
    """Exim 4.96 on a free loopback ``port`` that holds mail for hold.test until ETRN."""

    name = "exim496"

    def __init__(self) -> None:
        super().__init__(
            exim_path=EXIM496_PATH,
            install_hint="run .ci/install-peers as root to unpack Exim 4.96",
        )
        self.port = free_port()
        self.receiver_port = free_port()

    def listen_ports(self) -> list[int]:
        return [self.port]

    def write_config(self) -> str:
        return f"""\
exim_path = {self.exim_path}
spool_directory = {self.spool_dir}
log_file_path = {self.log_dir}/%slog
pid_file_path = {self.root}/exim.pid
notifier_socket = {self.spool_dir}/exim496_notify
primary_hostname = etrn-mx.test
qualify_domain = etrn-mx.test
daemon_smtp_ports = {self.port}
local_interfaces = <; {LOOPBACK}
host_lookup =
rfc1413_hosts =
keep_environment =
tls_advertise_hosts =
domainlist relay_domains = {HOLD_DOMAIN}
queue_domains = +relay_domains
acl_smtp_rcpt = check_rcpt
acl_smtp_etrn = check_etrn
log_selector = +smtp_connection +etrn

begin acl

check_rcpt:
  accept hosts = {LOOPBACK}
         domains = +relay_domains
  deny   message = relay not permitted

check_etrn:
  # Accept the domain with or without the "#" so that the plain form
  # reaches Exim's own "501 argument must begin with #" check.
  accept hosts = {LOOPBACK}
         condition = ${{if match{{$smtp_command_argument}}{{\\N^#?hold\\.test$\\N}}}}
  deny

begin routers

held:
  driver = manualroute
  domains = +relay_domains
  route_list = * {LOOPBACK}
  self = send
  transport = to_receiver

begin transports

to_receiver:
  driver = smtp
  port = {self.receiver_port}
  allow_localhost
  hosts_avoid_tls = *

begin retry

* * F,1h,1h
"""

    def queue_messages(self, count: int, domain: str = HOLD_DOMAIN) -> list[bytes]:
        """Submit ``count`` messages for ``user@domain`` and wait until all are queued.

        Returns the submitted message bytes in order.
        """
        before = self.queue_count()
        messages = [make_message(index, f"user{index}@{domain}") for index in range(count)]
        send_messages(self.port, [(f"user{index}@{domain}", message) for index, message in enumerate(messages)])
        self.wait_queue_count(before + count)
        return messages
