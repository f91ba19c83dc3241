"""Exim >= 4.99 from the Debian sid chroot as an ODMR (RFC 2645 ATRN) provider.

Run by ``chroot <sid root> /usr/sbin/exim4 -C <config> -bdf``. A chroot
shares the host's network, so the daemon listens on loopback ports of the
host. All its files live in a temporary directory under the chroot's /tmp.

One daemon listens on two ports. ``smtp_port`` takes injected mail and
``odmr_port`` (366 in real deployments) accepts ATRN. Mail for the ODMR
domains is held by ``queue_only``. After a successful ATRN the provider
turns the line around on the same connection and delivers the held mail
to the client that sent ATRN, through a manualroute router whose route_data is
``<;$atrn_host`` (Exim sets it to ``[client ip]:client port``). The ATRN
ACL allows the authenticated user ``odmr`` to take the domains in
``domains``. It replies ``453 You have no mail`` when none of them has
queued mail, and denies every other domain.

Replies this peer gives (observed with Exim 4.100.1 from sid):

    ATRN before AUTH          530 ATRN is not permitted without authentication
    AUTH, wrong password      535 Incorrect authentication data
    domain not allowed        450 Administrative prohibition
    nothing queued            453 You have no mail
    mail queued               250 ODMR provider turning line around

Transcript of a session observed with Exim 4.100.1, recorded by
``odmr_customer.run_odmr_session`` (plain TCP, CRAM-MD5, 2 messages
queued for odmr.test). "C:" is the customer, "S:" is Exim. After the 250
to ATRN the customer sends the greeting and Exim acts as SMTP client on
the same connection:

    S: 220 odmr-provider.test ESMTP Exim 4.100.1 Fri, 04 Dec 2026 20:51:58 +0000
    C: EHLO customer.test
    S: 250-odmr-provider.test Hello customer.test [127.0.0.1]
    S: 250-SIZE 52428800 / 250-LIMITS MAILMAX=1000 RCPTMAX=50000 / 250-8BITMIME
    S: 250-ATRN / 250-PIPELINING / 250-PIPECONNECT / 250-AUTH PLAIN LOGIN CRAM-MD5
    S: 250-CHUNKING / 250-STARTTLS / 250-SMTPUTF8 / 250 HELP
    C: AUTH CRAM-MD5
    S: 334 PDI4MDU0LjE3OTY0MTc1MThAb2Rtci1wcm92aWRlci50ZXN0Pg==
    C: <CRAM-MD5 response>
    S: 235 Authentication succeeded
    C: ATRN odmr.test
    S: 250 ODMR provider turning line around
    C: 220 customer.test ODMR customer ready
    S: EHLO odmr-provider.test
    C: 250-customer.test / 250 8BITMIME
    S: MAIL FROM:<sender@origin.test>
    C: 250 2.1.0 ok
    S: RCPT TO:<user0@odmr.test>
    C: 250 2.1.5 ok
    S: DATA
    C: 354 go ahead
    S: <14 lines of message data> .
    C: 250 2.0.0 accepted
       (the same MAIL/RCPT/DATA for user1@odmr.test)
    S: QUIT
    C: 221 2.0.0 bye

Exim logs the run as "Start ODMR queue run: pid=... -qq -Rr @(odmr.test)"
and each message after the first with a "*" after the host (a continued
connection). A plaintext session delivers 20 queued messages in one go.

Over STARTTLS (TLS 1.3 or 1.2, AUTH PLAIN) Exim 4.100.1 delivers only the
first message. The second message's delivery process sends MAIL FROM,
then logs "TLS error on connection ... (ODMR customer) (recv): An
unexpected TLS packet was received" and closes the connection. The
remaining messages stay queued ("defer: no host found for existing SMTP
connection"). This happens with the stdlib customer as well, so it is an
Exim fault. Setting ``hosts_noproxy_tls = *`` on the transport made it
worse (the connection closed during the first DATA).
``starttls_session_stops_after_first_message`` detects it.
"""

from __future__ import annotations

import functools

from ._exim import PEERS_ROOT, EximDaemon
from ._process import LOOPBACK, PeerFailed, free_port, run
from .messages import make_message, send_messages
from .odmr_customer import run_odmr_session

SID_ROOT = PEERS_ROOT / "sid"
ODMR_DOMAIN = "odmr.test"
ODMR_USER = "odmr"


class EximOdmrProvider(EximDaemon):
    """The sid Exim on free loopback ports, holding mail for ODMR pickup.

    ``password`` is the password of user ``odmr`` for AUTH PLAIN, LOGIN
    and CRAM-MD5. ``domains`` are the domains that user may take.
    ``cert_file`` is the self-signed server certificate for STARTTLS,
    usable as a CA file by clients (its names are localhost and
    127.0.0.1).
    """

    name = "odmr"

    def __init__(self, *, password: str = "odmr-secret", domains: tuple[str, ...] = (ODMR_DOMAIN,)) -> None:
        super().__init__(
            exim_path="/usr/sbin/exim4",
            chroot=SID_ROOT,
            install_hint="run .ci/install-peers as root to build the sid chroot with Exim >= 4.99",
        )
        if "'" in password or "}" in password or "{" in password or "$" in password:
            raise ValueError("the password may not contain quotes, braces or '$' (it is written into an Exim config)")
        self.username = ODMR_USER
        self.password = password
        self.domains = domains
        self.smtp_port = free_port()
        self.odmr_port = free_port()
        self.cert_file = self.root / "cert.pem"
        self.key_file = self.root / "key.pem"
        self.password_file = self.root / "password"

    def listen_ports(self) -> list[int]:
        return [self.smtp_port, self.odmr_port]

    def prepare(self) -> None:
        """Create the self-signed certificate and the client's password file."""
        run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(self.key_file), "-out", str(self.cert_file),
                "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ]
        )
        # The receiving process reads the key after switching to Debian-exim.
        self.key_file.chmod(0o640)
        self.chown_to_exim(self.key_file)
        self.cert_file.chmod(0o644)
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)

    def write_config(self) -> str:
        domains = " : ".join(self.domains)
        user = self.username
        password = self.password
        return f"""\
exim_path = {self.exim_path}
spool_directory = {self.inner_path(self.spool_dir)}
log_file_path = {self.inner_path(self.log_dir)}/%slog
pid_file_path = {self.inner_path(self.root)}/exim.pid
# The notifier socket is in the abstract namespace, which the chroot
# shares with the host, so the name has to be unique per instance.
notifier_socket = {self.inner_path(self.spool_dir)}/notify-{self.odmr_port}
primary_hostname = odmr-provider.test
qualify_domain = odmr-provider.test
daemon_smtp_ports = {self.smtp_port} : {self.odmr_port}
local_interfaces = <; {LOOPBACK}
host_lookup =
rfc1413_hosts =
keep_environment =
domainlist odmr_domains = {domains}
queue_only
queue_run_in_order
tls_advertise_hosts = *
tls_certificate = {self.inner_path(self.cert_file)}
tls_privatekey = {self.inner_path(self.key_file)}
acl_smtp_rcpt = check_rcpt
acl_smtp_atrn = ${{if ={{$received_port}}{{{self.odmr_port}}} {{check_atrn}}{{}}}}
log_selector = +smtp_connection +smtp_protocol_error +tls_cipher +received_recipients

begin acl

check_rcpt:
  accept hosts = {LOOPBACK}
         domains = +odmr_domains
  deny   message = relay not permitted

check_atrn:
  # ATRN takes an optional comma-separated domain list. Without one the
  # customer gets all of its domains. The argument is tainted, and Exim
  # refuses tainted atrn_domains, so each requested domain is replaced by
  # the matching item ($value) of the literal list.
  deny   condition = ${{if !eq{{$authenticated_id}}{{{user}}}}}
  warn   set acl_m0 = ${{if def:smtp_command_argument \\
             {{${{map {{<, $smtp_command_argument}} \\
                 {{${{if inlist{{$item}}{{{domains}}} {{$value}}}}}}}}}} \\
             {{${{sg{{{domains}}}{{ : }}{{,}}}}}}}}
  deny   condition = ${{if !def:acl_m0}}
  defer  !atrn_domains = <, $acl_m0
         message = 453 You have no mail
  accept

begin routers

odmr_customer:
  driver = manualroute
  domains = +odmr_domains
  condition = ${{if def:atrn_host}}
  route_data = <;$atrn_host
  self = send
  transport = odmr_smtp

begin transports

odmr_smtp:
  driver = smtp
  allow_localhost

begin retry

* * F,1h,1h

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and {{{{eq{{$auth2}}{{{user}}}}}{{eq{{$auth3}}{{{password}}}}}}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if and {{{{eq{{$auth1}}{{{user}}}}}{{eq{{$auth2}}{{{password}}}}}}}}}
  server_set_id = $auth1

cram:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${{if eq{{$auth1}}{{{user}}}{{{password}}}fail}}
  server_set_id = $auth1
"""

    def inject_messages(self, count: int, domain: str = ODMR_DOMAIN) -> list[bytes]:
        """Queue ``count`` messages, each with one recipient ``user<i>@domain``.

        Returns the submitted message bytes in order, after waiting until
        the queue holds them all.
        """
        before = self.queue_count()
        messages = [make_message(index, f"user{index}@{domain}") for index in range(count)]
        send_messages(self.smtp_port, [(f"user{index}@{domain}", message) for index, message in enumerate(messages)])
        self.wait_queue_count(before + count)
        return messages


def ensure_odmr_capable() -> None:
    """Raise PeerFailed unless the chroot's Exim is at least 4.99 (the first with ATRN)."""
    version = exim_version()
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) < (4, 99):
        raise PeerFailed(f"{SID_ROOT} has Exim {version}; ATRN needs 4.99 or later")


def exim_version() -> str:
    """Return the version of the chroot's Exim, such as ``4.100.1``."""
    output = run(["chroot", str(SID_ROOT), "/usr/sbin/exim4", "-C", "/dev/null", "-bV"], check=False).stdout
    for line in output.splitlines():
        if line.startswith("Exim version "):
            return line.split()[2]
    raise PeerFailed(f"cannot read the Exim version in {SID_ROOT}: {output.strip()[:200]}")


@functools.cache
def starttls_session_stops_after_first_message() -> bool:
    """Check whether the provider drops an ATRN session over STARTTLS after one message.

    Exim 4.100.1 does: the second message's delivery process fails with
    "TLS error ... An unexpected TLS packet was received" right after
    MAIL FROM, closes the connection and leaves the rest queued. The
    check runs a fresh provider with two messages and the stdlib ODMR
    customer, so the result does not depend on mailreleased.
    """
    provider = EximOdmrProvider()
    try:
        provider.start()
        provider.inject_messages(2)
        session = run_odmr_session(
            provider.odmr_port,
            username=provider.username,
            password=provider.password,
            domain=ODMR_DOMAIN,
            starttls_cafile=provider.cert_file,
        )
        return len(session.messages) < 2
    finally:
        provider.stop()
