"""Typed settings: one TOML file plus ``BCCD_<SECTION>__<KEY>`` environment overrides.

``load_settings(path, environ)`` returns a validated, frozen :class:`Settings` or raises
:class:`ConfigError` whose message names the key and the reason
(``smtp.max_message_size: expected a size such as 25MiB``). Settings are loaded once at
start and passed in; there is no global config object.

Durations are whole seconds or a number with a unit (``90s``, ``15m``, ``72h``, ``30d``).
Sizes are whole bytes or a number with a unit (``512KiB``, ``25MiB``, ``1GiB``; ``KB`` and
``MB`` are read as powers of 1000).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from bccd.addresses import AddressError, normalize_domain
from bccd.oauth_settings import OAuthProviderSettings, OidcSettings, with_presets
from bccd.private import private_dirs

ENV_PREFIX = "BCCD_"


class ConfigError(Exception):
    """A configuration value (or file) that cannot be used; the message is one line."""


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "ki": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mi": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gi": 1024**3, "gb": 1000**3,
}


def parse_duration(value: Any) -> int:
    """``90s``/``15m``/``72h``/``30d``/``2w`` or whole seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 15m, 72h or 30d")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        if m:
            return int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError("expected a duration such as 90s, 15m, 72h or 30d")


def parse_size(value: Any) -> int:
    """``512KiB``/``25MiB`` or whole bytes → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 25MiB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a size must be positive")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            n = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
            if n > 0:
                return n
    raise ValueError("expected a size such as 25MiB")


Duration = Annotated[int, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def _parse_hostport(value: Any, default_port: int) -> tuple[str, int]:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected HOST:PORT such as 127.0.0.1:2525")
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_s = value.split(":")
    elif value.count(":") > 1:
        raise ValueError("write an IPv6 address in brackets: [::1]:2525")
    else:
        host, port_s = value, ""
    try:
        port = int(port_s) if port_s else default_port
    except ValueError:
        raise ValueError(f"port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host or "0.0.0.0", port  # noqa: S104 - explicit empty host means all


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = ""  # empty → sqlite under storage.data_dir
    busy_timeout: Duration = 10  # SQLite: wait this long for a lock, then 451 4.3.0


class SmtpSettings(_Section):
    listen: str = "127.0.0.1:2525"
    bcc_domain: str = "bcc.localhost"
    hostname: str = ""
    max_message_size: Size = 25 * 1024 * 1024
    max_header_size: Size = 512 * 1024
    max_line_length: Size = 1024 * 1024
    max_recipients: int = Field(default=100, ge=1, le=100_000)
    max_connections: int = Field(default=500, ge=1)
    max_connections_per_ip: int = Field(default=50, ge=1)
    command_call_limit: int = Field(default=200, ge=10)
    timeout: Duration = 300
    min_data_rate: int = Field(default=500, ge=0)   # bytes/s during DATA; 0 = off
    connection_deadline: Duration = 1800             # whole session; 0 = off
    greet_pause: Duration = 0                        # wait before the greeting (early talkers)
    tls_cert: str = ""
    tls_key: str = ""
    lmtp: bool = False
    trusted_relays: list[str] = Field(default_factory=list)
    workers: int = Field(default=1, ge=0, le=64)  # SMTP processes; 0 = one per CPU

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _parse_hostport(v, 2525)
        return v

    @field_validator("bcc_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        try:
            return normalize_domain(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("trusted_relays")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network such as 10.0.0.0/8") from None
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        return _parse_hostport(self.listen, 2525)

    @property
    def process_count(self) -> int:
        """SMTP processes to run: ``workers``, or one per CPU when it is 0."""
        if self.workers:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))  # the CPUs this process may use
        except OSError:  # a seccomp filter may refuse it
            return max(1, os.cpu_count() or 1)


class AuthSettings(_Section):
    mode: Literal["dmarc", "off"] = "dmarc"
    unverified: Literal["reject", "quarantine"] = "reject"
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    authserv_id: str = ""  # our own; empty → smtp.hostname


class DnsSettings(_Section):
    nameservers: list[str] = Field(default_factory=list)
    port: int = Field(default=53, ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("nameservers")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return v


class HttpSettings(_Section):
    listen: str = "127.0.0.1:8025"
    public_url: str = ""  # empty → http://<listen>
    # request bodies (bccd.web.limits): every path not in body_limits; path prefix → size
    max_body: Size = 64 * 1024
    body_limits: dict[str, Size] = Field(default_factory=dict)
    # /metrics answers these clients (CIDRs) or a request with this bearer token
    metrics_allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    metrics_token: str = ""

    @field_validator("body_limits")
    @classmethod
    def _prefixes(cls, v: dict[str, int]) -> dict[str, int]:
        for prefix in v:
            if not prefix.startswith("/"):
                raise ValueError(f"{prefix!r} is not a path: write it as /api/v1/…")
        return v

    @field_validator("metrics_allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network such as 127.0.0.0/8") from None
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _parse_hostport(v, 8025)
        return v

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/")

    @property
    def host_port(self) -> tuple[str, int]:
        return _parse_hostport(self.listen, 8025)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host, port = self.host_port
        return f"http://{host}:{port}"


class OutboundSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str = ""
    password: str = ""
    from_address: str = ""  # empty → bccd@<bcc_domain>
    timeout: Duration = 30


class ConfirmSettings(_Section):
    ttl: Duration = 72 * 3600
    resend_interval: Duration = 300   # per (user, address)
    daily_cap: int = Field(default=20, ge=1, le=10_000)  # confirmation mails per user a day


class ImapSettings(_Section):
    initial_days: int = Field(default=30, ge=0)
    poll_interval: Duration = 300
    batch_size: int = Field(default=100, ge=1, le=10_000)
    lease: Duration = Field(default=120, ge=5)  # one instance syncs an account; renewed


class StorageSettings(_Section):
    data_dir: str = "./var"
    blob_dir: str = ""  # empty → <data_dir>/blobs
    # where attachment bytes go: "database" (the default with PostgreSQL) or "fs" under
    # blob_dir (the default with SQLite); unset → by the database (Settings.blob_store)
    blobs: Literal["database", "fs"] | None = None


class WebhookSettings(_Section):
    url: str = ""
    secret: str = ""


class SecuritySettings(_Section):
    secret_key: str = ""
    old_secret_keys: list[str] = Field(default_factory=list)


class RetentionSettings(_Section):
    rejections: Duration = 30 * 86400
    quarantine: Duration = 14 * 86400
    quarantine_max_per_user: int = Field(default=1000, ge=1)
    # bccd.lifecycle: how often the purge and blob GC run, and how long an unreferenced
    # blob is spared after its last write (must exceed any put-to-commit time of ingest)
    interval: Duration = Field(default=3600, ge=1)
    blob_grace: Duration = 3600
    # with several instances one of them runs each pass, holding this lease (renewed)
    lease: Duration = Field(default=120, ge=5)


class SigninSettings(_Section):
    """The emailed sign-in link (SPEC §9)."""

    link_ttl: Duration = Field(default=15 * 60, ge=60, le=24 * 3600)
    resend_interval: Duration = 60  # one link per address this often; more are not sent


class TrackingSettings(_Section):
    """Open and click tracking of mail sent from bccd (SPEC §13)."""

    ttl: Duration = Field(default=365 * 86400, ge=60)  # a token works this long after sending


class LogSettings(_Section):
    format: Literal["json", "console"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    auth: AuthSettings = AuthSettings()
    dns: DnsSettings = DnsSettings()
    http: HttpSettings = HttpSettings()
    outbound: OutboundSettings = OutboundSettings()
    confirm: ConfirmSettings = ConfirmSettings()
    imap: ImapSettings = ImapSettings()
    storage: StorageSettings = StorageSettings()
    webhooks: WebhookSettings = WebhookSettings()
    security: SecuritySettings = SecuritySettings()
    retention: RetentionSettings = RetentionSettings()
    log: LogSettings = LogSettings()
    oauth: Annotated[dict[str, OAuthProviderSettings], BeforeValidator(with_presets)] = Field(
        default_factory=dict)
    oidc: OidcSettings = OidcSettings()
    signin: SigninSettings = SigninSettings()
    tracking: TrackingSettings = TrackingSettings()


    # derived, resolved at load time
    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def blob_dir(self) -> Path:
        return Path(self.storage.blob_dir) if self.storage.blob_dir else self.data_dir / "blobs"

    @property
    def blob_store(self) -> Literal["database", "fs"]:
        """``storage.blobs``, or its default: ``database`` with PostgreSQL, ``fs`` with SQLite."""
        if self.storage.blobs is not None:
            return self.storage.blobs
        return "fs" if self.database_url.startswith("sqlite") else "database"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'bccd.sqlite3').as_posix()}"

    @property
    def hostname(self) -> str:
        if self.smtp.hostname:
            return self.smtp.hostname
        import socket

        return socket.getfqdn()

    @property
    def authserv_id(self) -> str:
        return self.auth.authserv_id or self.hostname

    @property
    def outbound_from(self) -> str:
        return self.outbound.from_address or f"bccd@{self.smtp.bcc_domain}"

    @property
    def secret_keys(self) -> list[str]:
        """Current key first, then the old ones that still verify and decrypt."""
        return [self.security.secret_key, *self.security.old_secret_keys]


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        section, key = section.lower(), key.lower()
        if not section or not key:
            continue
        table = out.setdefault(section, {})
        *inner, key = key.split("__")  # BCCD_OAUTH__GOOGLE__CLIENT_SECRET: a table of tables
        for part in inner:
            table = table.setdefault(part, {})
        table[key] = _env_value(raw)
    return out


def _env_value(raw: str) -> Any:
    """Environment values are strings; TOML literals (lists, booleans, numbers) are read as such."""
    text = raw.strip()
    if text[:1] in "[{" or text in ("true", "false") or re.fullmatch(r"-?\d+(\.\d+)?", text):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return raw
    return raw


def _format_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    msg = msg.removeprefix("Value error, ")
    if msg.startswith(f"{loc}."):  # a validator of a table of tables names the key itself
        return msg
    return f"{loc}: {msg}"


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file (if any) and the environment overrides; validate everything."""
    env = os.environ if environ is None else environ
    if path is None and env.get("BCCD_CONFIG"):
        path = env["BCCD_CONFIG"]
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    for section, values in _env_overrides(env).items():
        existing = data.get(section)
        if existing is None:
            data[section] = values
        elif isinstance(existing, dict):
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(existing.get(key), dict):
                    existing[key].update(value)
                else:
                    existing[key] = value
        else:
            raise ConfigError(f"{section}: must be a table")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


def ensure_secret_key(settings: Settings) -> Settings:
    """Return settings with ``security.secret_key`` set.

    When none is configured, a key is generated on first start and kept (mode 0600) in the
    data directory; later starts read it back.
    """
    if settings.security.secret_key:
        return settings
    key_path = settings.data_dir / SECRET_KEY_FILE
    try:
        key = key_path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        private_dirs(settings.data_dir)
        key = secrets.token_urlsafe(32)
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            key = key_path.read_text(encoding="ascii").strip()
        else:
            try:
                os.write(fd, key.encode("ascii") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise ConfigError(f"security.secret_key: cannot read {key_path}: {exc}") from None
    if not key:
        raise ConfigError(f"security.secret_key: {key_path} is empty")
    security = settings.security.model_copy(update={"secret_key": key})
    return settings.model_copy(update={"security": security})
