"""A real OpenLDAP slapd (Debian's `slapd`) on loopback, with its configuration in a temporary directory.

The directory holds the cn=config tree (written once with `slapadd -n0`), the mdb database and the
log, so `stop()` and `start()` again is an outage and a recovery with the same users; `close()` is
the end. slapd runs as whoever starts it: with no `-u` it never switches user, so the same files
work as root (CI) and as anyone else.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.process import Command, LocalServer
from devstack.tls import TlsFiles, make_tls
from matrix_stack.shared.route.processes import free_ports, port_open

INSTALL_HINT = "apt-get install slapd ldap-utils"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_PATH = Path("/etc/ldap/schema")
BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
READER_DN = f"cn=reader,{BASE_DN}"
PEOPLE_DN = f"ou=people,{BASE_DN}"


def binary() -> str | None:
    """slapd's path: Debian puts it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("slapd")
    if found:
        return found
    return "/usr/sbin/slapd" if os.access("/usr/sbin/slapd", os.X_OK) else None


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed ({INSTALL_HINT})")
    return found


@dataclass(frozen=True)
class LdapUser:
    uid: str
    password: str
    cn: str
    mail: str


def ssha(password: str) -> str:
    """The {SSHA} form of `password`: slapadd stores userPassword as given, it hashes nothing."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def escape_dn_value(value: str) -> str:
    """An attribute value as it may stand in a DN (RFC 4514)."""
    escaped = "".join(f"\\{char}" if char in ',+"\\<>;=' else char for char in value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _ldif(attribute: str, value: str) -> str:
    # Anything beyond plain printable ASCII (a name with an accent, a leading space) goes base64.
    safe = value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<"))
    if safe and not value.endswith(" "):
        return f"{attribute}: {value}\n"
    return f"{attribute}:: {base64.b64encode(value.encode()).decode()}\n"


def _entry(dn: str, *attributes: tuple[str, str]) -> str:
    return _ldif("dn", dn) + "".join(_ldif(name, value) for name, value in attributes) + "\n"


# The few bytes of BER an LDAP simple bind needs (RFC 4511), so readiness checks and tests can bind
# without a client library or a process per attempt.
def _ber(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection before answering")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> bytes:
    """One LDAPMessage's content (what follows its SEQUENCE tag and length)."""
    tag, first = _read_exactly(sock, 2)
    if tag != 0x30:
        raise ValueError(f"not an LDAP message (tag {tag:#x})")
    length = first
    if first & 0x80:
        length = int.from_bytes(_read_exactly(sock, first & 0x7F), "big")
    return _read_exactly(sock, length)


def _element(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """The tag, content and next offset of the BER element at `offset`."""
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    return tag, data[offset : offset + length], offset + length


def ldap_bind(
    port: int, dn: str = "", password: str = "", *, host: str = "127.0.0.1", timeout: float = 2.0
) -> int:
    """A simple bind's LDAP result code: 0 is success, 49 wrong credentials.

    An empty `dn` and `password` is an anonymous bind. A server that does not answer raises
    `TimeoutError`, one that closes the connection `ConnectionError`.
    """
    simple = _ber(0x80, password.encode())  # [0] simple
    request = _ber(0x60, _ber(0x02, b"\x03") + _ber(0x04, dn.encode()) + simple)  # BindRequest, v3
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_ber(0x30, _ber(0x02, b"\x01") + request))
        message = _read_message(sock)
        _, _, offset = _element(message, 0)  # messageID
        tag, response, _ = _element(message, offset)
        if tag != 0x61:
            raise ValueError(f"not a BindResponse (tag {tag:#x})")
        tag, code, _ = _element(response, 0)
        if tag != 0x0A:
            raise ValueError(f"a BindResponse without a resultCode (tag {tag:#x})")
        # A polite end (UnbindRequest), so the server logs no lost connection.
        sock.sendall(_ber(0x30, _ber(0x02, b"\x02") + _ber(0x42, b"")))
        return int.from_bytes(code, "big")


def bind_ok(port: int, dn: str = "", password: str = "", *, timeout: float = 1.0) -> bool:
    """A readiness check: the bind succeeds."""
    try:
        return ldap_bind(port, dn, password, timeout=timeout) == 0
    except (OSError, ValueError):
        return False


@dataclass
class LocalSlapd(LocalServer):
    """slapd serving `dc=example,dc=org` from mdb, with `users` under `ou=people`.

    `reader_password` adds `cn=reader,dc=example,dc=org`, a service account that may read and search
    everything but passwords. Anonymous binds work unless `allow_anonymous` is false (haproxy's
    ldap-check binds anonymously). With `tls`, slapd also listens for ldaps and offers StartTLS on
    the plain port, with `tls_files`: given (several servers behind one CA), or made on the first
    `start()` with a CA of this server's own (`tls_files.ca` is what clients trust).
    """

    users: Sequence[LdapUser] = ()
    reader_password: str | None = None
    allow_anonymous: bool = True
    tls: bool = False
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0  # 0: a free port, chosen once so a restart listens where it did
    ldaps_port: int = 0
    log_level: str = "none"  # slapd's -d: "none" logs only errors, "stats" every operation
    tls_files: TlsFiles | None = None
    name: str = field(default="slapd", init=False)

    def __post_init__(self) -> None:
        self.tls = self.tls or self.tls_files is not None
        if self.port == 0 or (self.tls and self.ldaps_port == 0):
            ports = free_ports(2)
            self.port = self.port or ports[0]
            if self.tls:
                self.ldaps_port = self.ldaps_port or ports[1]

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if not self.tls:
            raise RuntimeError("this slapd was started without TLS")
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def base_dn(self) -> str:
        return BASE_DN

    @property
    def admin_dn(self) -> str:
        return ADMIN_DN

    @property
    def reader_dn(self) -> str:
        return READER_DN

    def user_dn(self, uid: str) -> str:
        return f"uid={escape_dn_value(uid)},{PEOPLE_DN}"

    def _config_ldif(self) -> str:
        database = self.directory / "data"
        tls = ""
        if self.tls_files is not None:
            tls = (
                f"olcTLSCACertificateFile: {self.tls_files.ca}\n"
                f"olcTLSCertificateFile: {self.tls_files.cert}\n"
                f"olcTLSCertificateKeyFile: {self.tls_files.key}\n"
            )
        disallow = "" if self.allow_anonymous else "olcDisallows: bind_anon\n"
        schemas = "".join(
            f"include: file://{SCHEMA_PATH / name}.ldif\n" for name in ("core", "cosine", "inetorgperson")
        )
        # Passwords only to bind with (and to change one's own); the reader reads the rest.
        reader = f'by dn.exact="{READER_DN}" read ' if self.reader_password is not None else ""
        return (
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n"
            f"olcPidFile: {self.directory / 'slapd.pid'}\nolcArgsFile: {self.directory / 'slapd.args'}\n"
            f"{disallow}{tls}\n"
            f"dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n"
            f"olcModulePath: {MODULE_PATH}\nolcModuleLoad: back_mdb\n\n"
            f"dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n{schemas}\n"
            "dn: olcDatabase={-1}frontend,cn=config\nobjectClass: olcDatabaseConfig\n"
            "objectClass: olcFrontendConfig\nolcDatabase: {-1}frontend\n\n"
            "dn: olcDatabase={0}config,cn=config\nobjectClass: olcDatabaseConfig\n"
            "olcDatabase: {0}config\nolcAccess: {0}to * by * none\n\n"
            "dn: olcDatabase={1}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
            f"olcDatabase: {{1}}mdb\nolcDbDirectory: {database}\nolcDbMaxSize: 1073741824\n"
            f"olcSuffix: {BASE_DN}\nolcRootDN: {ADMIN_DN}\nolcRootPW: {ssha(self.admin_password)}\n"
            "olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none\n"
            f"olcAccess: {{1}}to * {reader}by self read by * none\n"
        )

    def _data_ldif(self) -> str:
        entries = [
            _entry(BASE_DN, ("objectClass", "dcObject"), ("objectClass", "organization"),
                   ("dc", "example"), ("o", "example")),
            _entry(PEOPLE_DN, ("objectClass", "organizationalUnit"), ("ou", "people")),
        ]  # fmt: skip
        if self.reader_password is not None:
            entries.append(
                _entry(READER_DN, ("objectClass", "organizationalRole"),
                       ("objectClass", "simpleSecurityObject"), ("cn", "reader"),
                       ("userPassword", ssha(self.reader_password)))
            )  # fmt: skip
        for user in self.users:
            entries.append(
                _entry(self.user_dn(user.uid), ("objectClass", "inetOrgPerson"), ("uid", user.uid),
                       ("cn", user.cn), ("sn", user.cn), ("mail", user.mail),
                       ("userPassword", ssha(user.password)))
            )  # fmt: skip
        return "".join(entries)

    def _initialise(self, executable: str) -> None:
        """The configuration and the entries, once: a restart serves what is already there."""
        if self.tls and self.tls_files is None:
            self.tls_files = make_tls(self.directory / "tls", ["localhost"])
        config_dir = self.directory / "slapd.d"
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.directory / "data", ignore_errors=True)  # what a failed attempt left
        (self.directory / "data").mkdir()
        (self.directory / "config.ldif").write_text(self._config_ldif())
        (self.directory / "data.ldif").write_text(self._data_ldif())
        slapadd = str(Path(executable).with_name("slapadd"))
        staging = self.directory / "slapd.d.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for args in (
            ["-n0", "-F", str(staging), "-l", str(self.directory / "config.ldif")],
            ["-b", BASE_DN, "-F", str(staging), "-l", str(self.directory / "data.ldif")],
        ):
            result = subprocess.run([slapadd, *args], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"slapadd {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        # Renamed into place when complete, so a half-written tree is never taken for a finished one.
        staging.rename(config_dir)
        password_file = self.directory / "admin.password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.admin_password)  # -y takes it byte for byte: no newline

    def command(self) -> Command:
        executable = binary()
        if executable is None:
            raise RuntimeError(f"slapd is not installed ({INSTALL_HINT})")
        if not (self.directory / "slapd.d").exists():
            self._initialise(executable)
        urls = [f"{self.url}/"] + ([f"{self.ldaps_url}/"] if self.tls else [])
        return Command([executable, "-d", self.log_level, "-F", str(self.directory / "slapd.d"),
                        "-h", " ".join(urls)])  # fmt: skip

    def ready(self) -> bool:
        plain = bind_ok(self.port, ADMIN_DN, self.admin_password)
        return plain and (not self.tls or port_open(self.ldaps_port))

    def _admin(self, tool: str, *args: str, stdin: str | None = None) -> str:
        command = [_client(tool), "-x", "-H", self.url, "-D", ADMIN_DN,
                   "-y", str(self.directory / "admin.password"), *args]  # fmt: skip
        # LDAPNOINIT: no ldap.conf or ~/.ldaprc of this machine changes what the tools do.
        env = {**os.environ, "LDAPNOINIT": "1"}
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def modify_mail(self, uid: str, value: str) -> None:
        change = _ldif("dn", self.user_dn(uid)) + "changetype: modify\nreplace: mail\n" + _ldif("mail", value)
        self._admin("ldapmodify", stdin=change)

    def read_mail(self, uid: str) -> str | None:
        output = self._admin("ldapsearch", "-LLL", "-o", "ldif_wrap=no", "-b", self.user_dn(uid),
                             "-s", "base", "mail")  # fmt: skip
        for line in output.splitlines():
            if line.startswith("mail:: "):
                return base64.b64decode(line[len("mail:: ") :]).decode()
            if line.startswith("mail: "):
                return line[len("mail: ") :]
        return None
