"""``bccd doctor``: is this installation ready to receive mail? (SPEC §8)

``run_checks(settings)`` → a list of :class:`Finding` in a fixed order, each a small
named check with a human message and, when something is wrong, the fix to make:

1. ``config`` — values that work but are probably not what production wants
   (``auth.mode = off``, the development Bcc domain, no ``http.public_url``);
2. ``secret-key`` — configured, or kept in the data directory with mode 0600;
   ``files`` — nothing under the data and blob directories, and no SQLite database
   file (with its ``-wal``/``-shm``), is open to the group or others (SPEC §10: 0700
   directories, 0600 files);
3. ``database`` — reachable (``SELECT 1``) and migrated to the newest revision
   (an embedded SQLite database that ``bccd serve`` will migrate is a warning);
3b. ``blobs`` — where attachment bytes are (``storage.blobs``): blobs left in the store
   that is not configured (a ``bccd blobs migrate`` to run, or to finish) are a warning;
   blobs that messages reference and neither store holds (as seen from this host) fail;
4. ``dns-mx`` / ``dns-spf`` — the Bcc domain has an MX whose host resolves, and an SPF
   record (through ``dns.nameservers`` like the server; skipped for development domains);
5. ``tls`` — the STARTTLS certificate and key load together, the certificate is valid
   now and not about to expire (14 days), and names ``smtp.hostname``;
6. ``imap:<id>`` — each mailbox-sync account logs in (when ``bccd.imap`` is installed).

Status ``ok`` | ``warn`` | ``fail``; ``fail`` means mail is or will be lost or refused and
makes ``bccd doctor`` exit 1. Checks never raise: an error becomes a ``fail`` with its
reason. Everything here blocks (DNS, database, IMAP logins): it is a command, not a
server path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bccd.config import SECRET_KEY_FILE, Settings, ensure_secret_key
from bccd.crypto import SecretBox
from bccd.imap.client import connect_account
from bccd.lifecycle import blobmove
from bccd.mailboxes import accounts
from bccd.private import open_to_others
from bccd.smtp.server import tls_context
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.migrate import check_current

OK, WARN, FAIL = "ok", "warn", "fail"
DEV_SUFFIXES = (".localhost", ".test", ".example", ".invalid", ".local")
EXPIRY_WARNING = dt.timedelta(days=14)
IMAP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(check: str, message: str) -> list[Finding]:
    return [Finding(check, OK, message)]


# -- 1. configuration ------------------------------------------------------------------------
def check_config(settings: Settings) -> list[Finding]:
    out = []
    if settings.auth.mode == "off":
        out.append(Finding("config", WARN, "auth.mode = off: anyone can file mail as your users",
                           'set [auth] mode = "dmarc" (the default) in production'))
    if _is_dev_domain(settings.smtp.bcc_domain):
        out.append(Finding("config", WARN, f"smtp.bcc_domain is {settings.smtp.bcc_domain}, a "
                           "development domain: no MTA on the Internet can reach it",
                           "set [smtp] bcc_domain to the domain whose MX points at bccd"))
    if not settings.http.public_url:
        out.append(Finding("config", WARN, "http.public_url is not set: confirmation links will "
                           f"point at {settings.http.base_url}",
                           "set [http] public_url to the https:// address users reach bccd at"))
    if settings.smtp.lmtp and not settings.smtp.trusted_relays:
        out.append(Finding("config", WARN, "smtp.lmtp = true but no smtp.trusted_relays: SPF will "
                           "judge the relay in front of bccd, not the original client",
                           'list the relay in [smtp] trusted_relays, e.g. ["127.0.0.1/32"]'))
    return out or _ok("config", "settings are valid")


def _is_dev_domain(domain: str) -> bool:
    return domain == "localhost" or domain.endswith(DEV_SUFFIXES)


# -- 2. secret key ---------------------------------------------------------------------------
def check_secret_key(settings: Settings) -> list[Finding]:
    if settings.security.secret_key:
        return _ok("secret-key", "security.secret_key is configured")
    path = settings.data_dir / SECRET_KEY_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return [Finding("secret-key", WARN, f"no secret key yet: bccd serve will generate {path}",
                        "start bccd once, then back that file up (it decrypts stored credentials)")]
    except OSError as exc:
        return [Finding("secret-key", FAIL, f"cannot read {path}: {exc.strerror}",
                        "give the bccd user read access to its data directory")]
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Finding("secret-key", FAIL, f"{path} is readable by others (mode {stat.S_IMODE(mode):o})",
                        f"chmod 600 {path}")]
    return _ok("secret-key", f"kept in {path} (mode 600)")


def check_files(settings: Settings) -> list[Finding]:
    roots = [settings.data_dir, settings.blob_dir]
    u = make_url(settings.database_url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        roots += [Path(f"{u.database}{suffix}") for suffix in ("", "-wal", "-shm")]
    found = list(open_to_others(roots))
    if not found:
        return _ok("files", "the data directory and database are readable by bccd's user only")
    shown = ", ".join(f"{p} (mode {mode:o})" for p, mode in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return [Finding("files", FAIL, f"{len(found)} path(s) open to other users: {shown}{more}",
                    f"chmod -R go-rwx {settings.data_dir}" + "".join(
                        f" {r}" for r in roots[1:] if r.exists()
                        and not r.is_relative_to(settings.data_dir))
                    + " (bccd creates directories 0700 and files 0600)")]


# -- 3. database -----------------------------------------------------------------------------
def check_database(settings: Settings) -> list[Finding]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url


    url = settings.database_url
    u = make_url(url)
    shown = u.render_as_string(hide_password=True)
    sqlite = u.get_backend_name() == "sqlite"
    if sqlite and u.database and u.database != ":memory:" and not Path(u.database).exists():
        return [Finding("database", WARN, f"no database yet at {u.database}",
                        "bccd serve creates and migrates it (or run: bccd db upgrade)")]
    try:
        db = Database(url, pool_size=1, busy_timeout=float(settings.database.busy_timeout))
    except Exception as exc:
        return [Finding("database", FAIL, f"{shown}: {_first_line(exc)}", "check [database] url")]
    try:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return [Finding("database", FAIL, f"cannot reach {shown}: {_first_line(exc)}",
                            "start the database server, or fix [database] url")]
        try:
            current = check_current(db)
        except Exception as exc:
            return [Finding("database", FAIL, f"cannot read the schema version: {_first_line(exc)}",
                            "run: bccd db upgrade")]
    finally:
        db.dispose()
    if current:
        return _ok("database", f"{shown} is reachable and migrated")
    if sqlite:
        return [Finding("database", WARN, "the schema is not current",
                        "bccd serve migrates it on start (or run: bccd db upgrade)")]
    return [Finding("database", FAIL, "the schema is not current: bccd serve will refuse to start",
                    "run: bccd db upgrade")]


# -- 3b. blobs -------------------------------------------------------------------------------
def check_blobs(settings: Settings) -> list[Finding]:
    from sqlalchemy.engine import make_url

    u = make_url(settings.database_url)
    if u.get_backend_name() == "sqlite" and (not u.database or not Path(u.database).exists()):
        return []  # no database yet: nothing stored
    try:
        db = Database(settings.database_url, pool_size=1,
                      busy_timeout=float(settings.database.busy_timeout))
    except Exception:
        return []  # the database check says what is wrong
    try:
        try:
            if not check_current(db):
                return []
        except Exception:
            return []
        try:
            st = blobmove.status(db, Blobs.of(settings))
        except Exception as exc:
            return [Finding("blobs", WARN, f"cannot look at the blobs: {_first_line(exc)}",
                            "report this as a bccd bug")]
    finally:
        db.dispose()
    kind, other = st.configured, "fs" if st.configured == "database" else "database"
    out = []
    if st.missing:
        out.append(Finding(
            "blobs", FAIL, f"{st.missing} attachment blob(s) that messages reference are in "
            f"neither store as seen from this host (first: {st.missing_examples[0]}): those "
            "downloads answer 404",
            "with storage.blobs = fs, every instance must share blob_dir; otherwise restore "
            "the blobs from a backup"))
    if st.mixed:
        held = st.files if other == "fs" else st.database
        where = f"the file store ({settings.blob_dir})" if other == "fs" else "the database"
        out.append(Finding(
            "blobs", WARN, f"storage.blobs = {kind}, but {held} blob(s) are still in {where}: "
            "bccd reads them there, but " + ("instances on other hosts cannot"
                                             if other == "fs" else "they stay until moved"),
            f"run: bccd blobs migrate --to {kind}"))
    if out:
        return out
    count = st.database if kind == "database" else st.files
    size = st.database_bytes if kind == "database" else st.file_bytes
    note = ("" if kind == "database" or settings.database_url.startswith("sqlite")
            else "; with several instances on PostgreSQL every one must share blob_dir "
                 "(or use storage.blobs = database)")
    return _ok("blobs", f"storage.blobs = {kind}: {count} blob(s), {size / 2**20:.1f} MiB{note}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- 4. DNS ----------------------------------------------------------------------------------
def _resolver(settings: Settings) -> Any:
    import dns.resolver

    if settings.dns.nameservers:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = list(settings.dns.nameservers)
        r.port = settings.dns.port
    else:
        r = dns.resolver.Resolver()
    r.lifetime = r.timeout = float(settings.dns.timeout)
    return r


def check_dns(settings: Settings) -> list[Finding]:
    import dns.exception
    import dns.resolver

    domain = settings.smtp.bcc_domain
    if _is_dev_domain(domain):
        return [Finding("dns-mx", OK, f"{domain} is a development domain: DNS not checked")]
    r = _resolver(settings)
    out: list[Finding] = []
    try:
        answer = r.resolve(domain, "MX")
        hosts = sorted((rr.preference, str(rr.exchange).rstrip(".")) for rr in answer)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        hosts = []
    except dns.exception.DNSException as exc:
        return [Finding("dns-mx", FAIL, f"DNS did not answer for {domain}: {exc}",
                        "check [dns] nameservers (or the system resolver)")]
    target = settings.smtp.hostname or "<this host>"
    if not hosts:
        out.append(Finding("dns-mx", FAIL, f"{domain} has no MX record: no MTA can deliver to bccd",
                           f"publish: {domain}. MX 10 {target}."))
    else:
        unresolved = [h for _, h in hosts if not _resolves(r, h)]
        if unresolved:
            out.append(Finding("dns-mx", FAIL, f"MX host {', '.join(unresolved)} has no address",
                               f"publish an A/AAAA record for {unresolved[0]}"))
        else:
            out.append(Finding("dns-mx", OK, "MX " + ", ".join(f"{p} {h}" for p, h in hosts)))
    try:
        txts = ["".join(s.decode("utf-8", "replace") for s in rr.strings) for rr in r.resolve(domain, "TXT")]
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        txts = []
    except dns.exception.DNSException as exc:
        return [*out, Finding("dns-spf", FAIL, f"DNS did not answer for {domain} TXT: {exc}",
                              "check [dns] nameservers")]
    spf = [t for t in txts if t.lower().startswith("v=spf1")]
    if len(spf) == 1:
        out.append(Finding("dns-spf", OK, f"SPF: {spf[0]}"))
    elif not spf:
        out.append(Finding("dns-spf", WARN, f"{domain} has no SPF record: bccd's own mail "
                           f"(from {settings.outbound_from}) may be refused as spoofed",
                           f'publish: {domain}. TXT "v=spf1 mx -all"'))
    else:
        out.append(Finding("dns-spf", FAIL, f"{domain} has {len(spf)} SPF records (a permanent error)",
                           "merge them into one TXT record"))
    return out


def _resolves(r: Any, host: str) -> bool:
    import dns.exception

    for rtype in ("A", "AAAA"):
        try:
            if r.resolve(host, rtype):
                return True
        except dns.exception.DNSException:
            continue
    return False


# -- 5. TLS ----------------------------------------------------------------------------------
def check_tls(settings: Settings, now: dt.datetime | None = None) -> list[Finding]:
    from cryptography import x509


    if not settings.smtp.tls_cert:
        return [Finding("tls", WARN, "no certificate: STARTTLS is off, mail reaches bccd in clear text",
                        "set [smtp] tls_cert and tls_key (PEM), e.g. from Let's Encrypt")]
    try:
        tls_context(settings)
        pem = Path(settings.smtp.tls_cert).read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except Exception as exc:
        return [Finding("tls", FAIL, f"cannot use {settings.smtp.tls_cert}: {_first_line(exc)}",
                        "point smtp.tls_cert/tls_key at a matching PEM certificate chain and key")]
    now = now or dt.datetime.now(dt.UTC)
    not_after = cert.not_valid_after_utc
    if now < cert.not_valid_before_utc:
        return [Finding("tls", FAIL, "the certificate is not valid before "
                        f"{cert.not_valid_before_utc:%Y-%m-%d}", "install a certificate that is valid now")]
    if now >= not_after:
        return [Finding("tls", FAIL, f"the certificate expired on {not_after:%Y-%m-%d}",
                        "renew it, then: systemctl reload bccd (SIGHUP reloads it)")]
    out = []
    if not_after - now < EXPIRY_WARNING:
        out.append(Finding("tls", WARN, f"the certificate expires on {not_after:%Y-%m-%d}",
                           "renew it, then: systemctl reload bccd (SIGHUP reloads it)"))
    hostname = settings.hostname.lower()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if names and not any(n == hostname or (n.startswith("*.") and hostname.endswith(n[1:])) for n in names):
        out.append(Finding("tls", WARN, f"the certificate names {', '.join(names[:5])}, not {hostname}",
                           "issue it for smtp.hostname (the name in the MX record)"))
    return out or _ok("tls", f"certificate valid until {not_after:%Y-%m-%d}")


# -- 6. IMAP accounts ------------------------------------------------------------------------
def check_imap(settings: Settings) -> list[Finding]:
    try:
        db = Database(settings.database_url, pool_size=2)
    except Exception:
        return []  # the database check reports it
    try:
        try:
            with db.read() as s:
                rows = accounts.list_accounts(s)
        except Exception:
            return []  # no schema yet: the database check reports it
        if not rows:
            return []
        key_file = settings.data_dir / SECRET_KEY_FILE
        if not settings.security.secret_key and key_file.exists():
            settings = ensure_secret_key(settings)  # reads the kept key, creates nothing
        if not settings.secret_keys[0]:
            return [Finding("imap", FAIL, "no secret key: stored IMAP credentials cannot be read",
                            f"restore security.secret_key (or {key_file})")]
        box = SecretBox(settings.secret_keys)

        async def login(row: dict[str, Any]) -> Finding:
            name = f"imap:{row['id']}"
            where = f"{row['username']} at {row['host']}:{row['port']} ({row['user']})"
            try:
                _, imap = await asyncio.wait_for(connect_account(db, box, int(row["id"])), IMAP_TIMEOUT)
            except TimeoutError:
                return Finding(name, FAIL, f"{where}: no answer within {IMAP_TIMEOUT:.0f} s",
                               "check the host, port and firewall")
            except Exception as exc:
                return Finding(name, FAIL, f"{where}: {_first_line(exc)}", _imap_fix(exc, row))
            await imap.close()
            paused = " (paused by the poller: it resumes at its next attempt)" \
                if row.get("state") == "paused" else ""
            return Finding(name, OK, f"{where}: login works{paused}")

        async def all_logins() -> list[Finding]:
            return list(await asyncio.gather(*(login(r) for r in rows)))

        return asyncio.run(all_logins())
    finally:
        db.dispose()


def _imap_fix(exc: Exception, row: dict[str, Any]) -> str:
    kind = type(exc).__name__
    if kind == "AuthFailure":
        return (f"the server refused the login of {row['username']}: the password or OAuth grant "
                "changed — enter the new credentials (bccd imap add) and check `bccd imap list`")
    if kind == "TlsFailure":
        return "the TLS handshake failed: check the server certificate or the account's --ca-file"
    if kind == "ConnectFailure":
        return f"cannot connect to {row['host']}:{row['port']}: check the host, port and firewall"
    return "check the account with `bccd imap list` and the server's log"


CHECKS: tuple[Callable[[Settings], list[Finding]], ...] = (
    check_config, check_secret_key, check_files, check_database, check_blobs, check_dns,
    check_tls, check_imap,
)


def run_checks(settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    for check in CHECKS:
        name = check.__name__.removeprefix("check_").replace("_", "-")
        try:
            out.extend(check(settings))
        except Exception as exc:  # a check that breaks is itself a finding
            out.append(Finding(name, FAIL, f"the check failed: {_first_line(exc)}",
                               "report this as a bccd bug"))
    return out


def config_failure(message: str, path: str | None) -> Finding:
    where = path or os.environ.get("BCCD_CONFIG") or "the environment"
    return Finding("config", FAIL, message, f"fix that key in {where} (see conf/bccd.toml)")
